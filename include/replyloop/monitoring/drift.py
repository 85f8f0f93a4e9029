"""Intent of incoming messages and their drift from the training data, on MiniLM sentence embeddings.

Intent: the nearest intent centroid of the golden set (resources/eval/golden.jsonl), so the down-vote rate
can be read per intent without a classifier of its own. Drift: 1 - cosine similarity of the mean
embedding of the incoming customer messages and that of the training snapshot's customer messages
(0 = the same mix of topics), plus the share of
incoming messages whose nearest training message has cosine similarity below `NOVEL_BELOW`.
"""

from __future__ import annotations

import json

import numpy as np

from replyloop import resources

NOVEL_BELOW = 0.5
SAMPLE = 2000


def _golden() -> tuple[list[str], list[str]]:
    with open(resources.ROOT / "eval" / "golden.jsonl", encoding="utf-8") as fh:
        rows = [json.loads(line) for line in fh if line.strip()]
    texts = [[m["text"] for m in r["messages"] if m["role"] == "customer"][-1] for r in rows]
    return texts, [r["intent"] for r in rows]


def intents(embedded: np.ndarray) -> list[str]:
    from replyloop.evaluation.embeddings import encode

    texts, labels = _golden()
    golden = encode(texts)
    names = sorted(set(labels))
    centroids = np.stack([golden[[i for i, lab in enumerate(labels) if lab == n]].mean(0) for n in names])
    centroids /= np.linalg.norm(centroids, axis=1, keepdims=True)
    return [names[i] for i in (embedded @ centroids.T).argmax(1)] if len(embedded) else []


def drift(incoming: np.ndarray, training: np.ndarray) -> dict:
    if not len(incoming) or not len(training):
        return {"drift": float("nan"), "novel_share": float("nan")}
    a, b = incoming.mean(0), training.mean(0)
    cos = float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))
    nearest = (incoming @ training.T).max(1)
    return {"drift": 1.0 - cos, "novel_share": float((nearest < NOVEL_BELOW).mean())}


def sample(texts: list[str], n: int = SAMPLE, seed: int = 0) -> list[str]:
    if len(texts) <= n:
        return texts
    idx = np.random.default_rng(seed).choice(len(texts), n, replace=False)
    return [texts[i] for i in sorted(idx)]
