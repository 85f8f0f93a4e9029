"""Reply-length sanity as an `evaluate` module: is each reply a usable length and not a loop?

A reply is sane when it has between `min_words` and `max_words` words and no single word makes up more
than `max_repeat_share` of it (a degenerate "sorry sorry sorry ..." fails). Returns the share of sane
replies and, under `scores`, 1.0/0.0 per reply.
"""

import re
from collections import Counter

import evaluate

from replyloop.evaluation.metrics import text_metric_info

_WORD = re.compile(r"\w+", re.UNICODE)
_DESCRIPTION = "Share of replies with a sane length and no degenerate repetition."
_KWARGS = """
Args:
    predictions: list of generated replies.
    min_words, max_words: accepted length in words (default 2 and 80).
    max_repeat_share: largest share of the reply one word may take (default 0.5, replies of 6+ words).
Returns:
    {"sane_rate": float, "mean_words": float, "scores": [1.0 | 0.0 per reply]}
"""


def sane(text: str, min_words: int, max_words: int, max_repeat_share: float) -> bool:
    words = _WORD.findall((text or "").lower())
    if not min_words <= len(words) <= max_words:
        return False
    return len(words) < 6 or Counter(words).most_common(1)[0][1] / len(words) <= max_repeat_share


class ReplyLength(evaluate.Metric):
    def _info(self):
        return text_metric_info(_DESCRIPTION, _KWARGS, references=False)

    def _compute(self, predictions, min_words=2, max_words=80, max_repeat_share=0.5):
        scores = [float(sane(p, min_words, max_words, max_repeat_share)) for p in predictions]
        lengths = [len(_WORD.findall(p or "")) for p in predictions]
        n = max(len(scores), 1)
        return {"sane_rate": sum(scores) / n, "mean_words": sum(lengths) / n, "scores": scores}
