"""PII leak rate as an `evaluate` module: the share of replies that contain personal data.

Uses replyloop's one PII detector (`replyloop.pii.check_reply`): every pattern ingestion redacts, names
after a greeting, and any PII or typed placeholder ([EMAIL], [PHONE], ...) of the prompt echoed back.
Returns the rate, the counts by kind and, under `scores`, 1.0/0.0 per reply.
"""

import evaluate

from replyloop.evaluation.metrics import text_metric_info
from replyloop.pii import check_reply

_DESCRIPTION = "Fraction of replies with at least one PII span, or PII / placeholders of the prompt echoed back."
_KWARGS = """
Args:
    predictions: list of generated replies.
    prompts: optional list (one per reply) of the prompt text or list of texts, to catch echoes.
Returns:
    {"leak_rate": float, "leaks": int, "kinds": {kind: count}, "scores": [1.0 | 0.0 per reply],
     "spans": [[kind, text], ...] per reply}
"""


class PiiLeak(evaluate.Metric):
    def _info(self):
        return text_metric_info(_DESCRIPTION, _KWARGS, references=False)

    def _compute(self, predictions, prompts=None):
        prompts = prompts if prompts is not None else [None] * len(predictions)
        kinds, scores, spans = {}, [], []
        for text, prompt in zip(predictions, prompts):
            found = check_reply(text or "", prompt=prompt)
            scores.append(float(bool(found)))
            spans.append([[s.kind, s.text] for s in found])
            for span in found:
                kinds[span.kind] = kinds.get(span.kind, 0) + 1
        leaks = int(sum(scores))
        return {"leak_rate": leaks / max(len(predictions), 1), "leaks": leaks, "kinds": kinds, "scores": scores,
                "spans": spans}
