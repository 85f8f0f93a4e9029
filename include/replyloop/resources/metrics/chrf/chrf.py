"""chrF++ as an `evaluate` module, shipped in the repo so it loads offline by path (wraps sacrebleu).

Returns the corpus score and, under `scores`, the sentence-level score of each pair: the gate compares
models pair by pair (paired bootstrap), so it works on the sentence scores and their mean.
"""

import evaluate
from sacrebleu.metrics import CHRF

from replyloop.evaluation.metrics import text_metric_info

_DESCRIPTION = "chrF (character n-gram F-score; word_order=2 gives chrF++), on a 0-100 scale."
_KWARGS = """
Args:
    predictions: list of generated replies.
    references: list of reference replies (one per prediction).
    word_order: 0 for chrF, 2 for chrF++ (default 2).
Returns:
    {"score": corpus score, "sentence_mean": mean sentence score, "scores": [sentence score of each pair],
     "char_order": int, "word_order": int, "beta": int}
"""


class Chrf(evaluate.Metric):
    def _info(self):
        return text_metric_info(_DESCRIPTION, _KWARGS, references=True,
                                citation="Popovic, chrF++: words helping character n-grams, WMT 2017")

    def _compute(self, predictions, references, word_order=2):
        chrf = CHRF(word_order=word_order)
        predictions, references = list(predictions), list(references)
        corpus = chrf.corpus_score(predictions, [references])
        scores = [chrf.sentence_score(p, [r]).score for p, r in zip(predictions, references)]
        return {"score": corpus.score, "sentence_mean": sum(scores) / max(len(scores), 1), "scores": scores,
                "char_order": chrf.char_order, "word_order": word_order, "beta": chrf.beta}
