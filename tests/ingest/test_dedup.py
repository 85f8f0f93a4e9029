from __future__ import annotations

import multiprocessing

import numpy as np
import pytest

from replyloop.ingest.dedup import NUM_PERM, ContaminationGuard, Deduplicator, content_hash, signatures, words


def conv(*texts):
    roles = ["customer", "agent"] * len(texts)
    return {"messages": [{"role": r, "text": t} for r, t in zip(roles, texts)]}


BASE = ("My order of the blue running shoes size 42 has not arrived and the tracking page has not "
        "changed since Monday, can you tell me what is going on with it please",
        "Sorry about the delay with your running shoes! Please DM us your order number and we will check "
        "with the carrier straight away")
OTHER = ("I love the new kettle, it boils so fast and looks great in my kitchen, thank you so much",
         "That is great to hear, thanks for sharing! Enjoy your new kettle")


def resolve(convs, threshold=0.9, known=()):
    return Deduplicator(threshold, known=known).resolve([content_hash(c) for c in convs], signatures(convs))


def test_exact_duplicates_ignore_ids_case_and_timestamps():
    a = conv("Where is my parcel to Leeds?", "Sorry! Please DM us your order number.")
    b = {**conv("where is my parcel to leeds?", "SORRY! Please DM us your order number."), "conversation_id": "other"}
    assert content_hash(a) == content_hash(b)
    assert resolve([a, b]) == [None, "exact"]
    assert resolve([b], known=[content_hash(a)]) == ["exact"], "a conversation already in the snapshot"


def test_near_duplicates_are_caught_and_different_ones_kept():
    near = (BASE[0] + " thanks", BASE[1])
    assert resolve([conv(*BASE), conv(*near), conv(*OTHER)], threshold=0.8) == [None, "near", None]
    assert resolve([conv(*OTHER), conv(*BASE)], threshold=0.8) == [None, None]


def _jaccard(a: str, b: str) -> float:
    def sh(t):
        w = words(t)
        return {tuple(w[i:i + 3]) for i in range(len(w) - 2)}
    x, y = sh(a), sh(b)
    return len(x & y) / len(x | y)


def test_signature_agreement_estimates_jaccard():
    rng = np.random.default_rng(3)
    vocab = [f"w{i}" for i in range(400)]
    errors = []
    for _ in range(40):
        base = list(rng.choice(vocab, 120))
        edited = base.copy()
        for pos in rng.choice(len(base), int(rng.integers(1, 30)), replace=False):
            edited[pos] = str(rng.choice(vocab))
        a, b = " ".join(base), " ".join(edited)
        sig = signatures([conv(a), conv(b)])
        errors.append(abs((sig[0] == sig[1]).mean() - _jaccard(a, b)))
    assert np.mean(errors) < 0.05 and max(errors) < 0.2


def _brute_force(sig: np.ndarray, agree: int) -> list[int]:
    kept, dups = [], []
    for j in range(len(sig)):
        if kept and (sig[kept] == sig[j]).sum(axis=1).max() >= agree:
            dups.append(j)
        else:
            kept.append(j)
    return dups


@pytest.mark.parametrize("threshold", [0.8, 0.9, 0.95])
def test_banded_search_finds_exactly_what_comparing_all_pairs_finds(threshold):
    """Families of signatures with a few positions changed, around every threshold: the banded search
    must flag the same conversations as comparing each one with every earlier kept one."""
    rng = np.random.default_rng(7)
    rows = []
    for _ in range(60):
        root = rng.integers(0, 2**32, NUM_PERM, dtype=np.uint64).astype(np.uint32)
        for _ in range(int(rng.integers(1, 8))):
            child = root.copy()
            flip = rng.choice(NUM_PERM, int(rng.integers(0, 16)), replace=False)
            child[flip] = rng.integers(0, 2**32, len(flip), dtype=np.uint64).astype(np.uint32)
            rows.append(child)
    sig = np.stack(rows)
    order = rng.permutation(len(sig))
    sig = sig[order]
    d = Deduplicator(threshold)
    got = [i for i, s in enumerate(d.resolve([str(i) for i in range(len(sig))], sig)) if s == "near"]
    assert got == _brute_force(sig, d.agree)
    assert got, "the families must contain near duplicates for the test to mean anything"


def _signature_in_child(text: str, queue) -> None:
    queue.put(signatures([conv(text)]))


def test_signatures_are_the_same_in_another_process():
    """Workers sketch in parallel: a signature must not depend on the process (no hash() seeds)."""
    text = BASE[0]
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    child = ctx.Process(target=_signature_in_child, args=(text, queue))
    child.start()
    theirs = queue.get(timeout=60)
    child.join(timeout=60)
    assert np.array_equal(theirs, signatures([conv(text)]))


def test_short_conversations_get_a_signature():
    sig = signatures([conv("hi"), conv("hi"), conv("")])
    assert sig.shape == (3, NUM_PERM) and np.array_equal(sig[0], sig[1])


def test_contamination_guard_exact_and_near():
    guard = ContaminationGuard(["Is the smartwatch waterproof? I want to wear it swimming."])
    assert guard.hit(conv("is the smartwatch waterproof?? i want to wear it swimming", "Yes!"))
    assert guard.hit(conv("Hi! Is the smartwatch waterproof? I want to wear it swimming.", "Yes!"))
    assert guard.hit(conv("Where is my parcel?", "Is the smartwatch waterproof? I want to wear it swimming.")) is None
    assert guard.hit(conv("Does the smartwatch have GPS?", "Yes")) is None


def test_near_duplicates_are_looked_for_within_a_group_and_exact_ones_everywhere():
    near = (BASE[0] + " thanks", BASE[1])
    convs = [conv(*BASE), conv(*near), conv(*BASE)]
    d = Deduplicator(0.8)
    assert d.resolve([content_hash(c) for c in convs], signatures(convs),
                     groups=["day-1", "day-2", "day-2"]) == [None, None, "exact"]


def test_conversations_without_words_are_not_all_alike():
    convs = [conv("😡😡😡", "🙏"), conv("!!!", "???"), conv("😡😡😡", "🙏 ")]
    sig = signatures(convs)
    assert not np.array_equal(sig[0], sig[1]) and np.array_equal(sig[0], sig[2])
    assert Deduplicator().resolve(["a", "b"], sig[:2]) == [None, None]


def test_sketching_in_chunks_gives_the_same_signatures(monkeypatch):
    from replyloop.ingest import dedup

    convs = [conv(f"parcel {i} is late again and again", f"sorry about parcel {i}") for i in range(7)]
    whole = signatures(convs)
    monkeypatch.setattr(dedup.Sketcher, "CHUNK", 3)
    assert np.array_equal(signatures(convs), whole)
