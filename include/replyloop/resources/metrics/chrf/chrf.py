"""chrF++ as an `evaluate` module, shipped in the repo so it loads offline by path (wraps sacrebleu)."""

import datasets
import evaluate
from sacrebleu.metrics import CHRF

_DESCRIPTION = "Corpus-level chrF (character n-gram F-score; word_order=2 gives chrF++), on a 0-100 scale."
_KWARGS = """
Args:
    predictions: list of generated replies.
    references: list of reference replies (one per prediction).
    word_order: 0 for chrF, 2 for chrF++ (default 2).
Returns:
    {"score": float, "char_order": int, "word_order": int, "beta": int}
"""


class Chrf(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation="Popovic, chrF++: words helping character n-grams, WMT 2017",
            inputs_description=_KWARGS,
            features=datasets.Features({"predictions": datasets.Value("string"),
                                        "references": datasets.Value("string")}),
        )

    def _compute(self, predictions, references, word_order=2):
        chrf = CHRF(word_order=word_order)
        result = chrf.corpus_score(list(predictions), [list(references)])
        return {"score": result.score, "char_order": chrf.char_order, "word_order": word_order, "beta": chrf.beta}
