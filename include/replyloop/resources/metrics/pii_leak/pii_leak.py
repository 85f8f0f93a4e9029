"""PII leak rate as an `evaluate` module: the share of replies that contain personal data.

Uses replyloop's own PII detector (`replyloop.pii.find_leaks`), the same one ingestion relies on,
so a model cannot pass the gate with data that ingestion would have redacted.
"""

import datasets
import evaluate
from replyloop.pii import find_leaks

_DESCRIPTION = "Fraction of predictions with at least one PII span (emails, phones, cards, IBANs, addresses...)."
_KWARGS = """
Args:
    predictions: list of generated replies.
Returns:
    {"leak_rate": float, "leaks": int, "kinds": {kind: count}}
"""


class PiiLeak(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation="",
            inputs_description=_KWARGS,
            features=datasets.Features({"predictions": datasets.Value("string")}),
        )

    def _compute(self, predictions):
        leaks, kinds = 0, {}
        for text in predictions:
            found = find_leaks(text)
            if found:
                leaks += 1
                for span in found:
                    kinds[span.kind] = kinds.get(span.kind, 0) + 1
        return {"leak_rate": leaks / max(len(predictions), 1), "leaks": leaks, "kinds": kinds}
