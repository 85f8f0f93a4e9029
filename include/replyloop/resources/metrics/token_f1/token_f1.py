"""Token F1 as an `evaluate` module (SQuAD-style word overlap), shipped in the repo and loaded by path.

Texts are lower-cased, punctuation is dropped and the words are compared as multisets. Returns the mean
and, under `scores`, one F1 per pair (the gate's paired bootstrap needs them).
"""

import re
from collections import Counter

import evaluate

from replyloop.evaluation.metrics import text_metric_info

_WORD = re.compile(r"[a-z0-9]+(?:'[a-z]+)?")
_DESCRIPTION = "Word-overlap F1 between each prediction and its reference, in [0, 1]."
_KWARGS = """
Args:
    predictions: list of generated replies.
    references: list of reference replies (one per prediction).
Returns:
    {"token_f1": mean F1, "scores": [F1 of each pair]}
"""


def _words(text: str) -> list[str]:
    return _WORD.findall((text or "").lower())


def pair_f1(prediction: str, reference: str) -> float:
    pred, ref = _words(prediction), _words(reference)
    if not pred or not ref:
        return float(pred == ref)
    common = sum((Counter(pred) & Counter(ref)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(pred), common / len(ref)
    return 2 * precision * recall / (precision + recall)


class TokenF1(evaluate.Metric):
    def _info(self):
        return text_metric_info(_DESCRIPTION, _KWARGS, references=True,
                                citation="Rajpurkar et al., SQuAD: 100,000+ Questions for Machine Comprehension "
                                         "of Text, 2016")

    def _compute(self, predictions, references):
        scores = [pair_f1(p, r) for p, r in zip(predictions, references)]
        return {"token_f1": sum(scores) / max(len(scores), 1), "scores": scores}
