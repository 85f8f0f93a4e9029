"""ROUGE as an `evaluate` module, shipped in the repo so it loads offline by path.

Wraps Google's `rouge_score` (the same package the Hub's `rouge` script wraps). Returns mean F-measures
and, under `scores`, the per-pair F-measures of each type (the gate's paired bootstrap needs them).
"""

import evaluate
from rouge_score import rouge_scorer

from replyloop.evaluation.metrics import text_metric_info

_DESCRIPTION = "ROUGE-1, ROUGE-2 and ROUGE-L F-measures between predictions and references (mean over pairs)."
_KWARGS = """
Args:
    predictions: list of generated replies.
    references: list of reference replies.
    rouge_types: which ROUGE types to compute (default rouge1, rouge2, rougeL).
    use_stemmer: Porter stemming before matching (default True).
Returns:
    {rouge type: mean F-measure in [0, 1], "scores": {rouge type: [F-measure of each pair]}}
"""


class Rouge(evaluate.Metric):
    def _info(self):
        return text_metric_info(_DESCRIPTION, _KWARGS, references=True,
                                citation="Lin, ROUGE: A Package for Automatic Evaluation of Summaries, 2004")

    def _compute(self, predictions, references, rouge_types=None, use_stemmer=True):
        rouge_types = rouge_types or ["rouge1", "rouge2", "rougeL"]
        scorer = rouge_scorer.RougeScorer(rouge_types=rouge_types, use_stemmer=use_stemmer)
        per = {t: [] for t in rouge_types}
        for pred, ref in zip(predictions, references):
            scores = scorer.score(ref, pred)
            for t in rouge_types:
                per[t].append(scores[t].fmeasure)
        n = max(len(predictions), 1)
        return {**{t: sum(v) / n for t, v in per.items()}, "scores": per}
