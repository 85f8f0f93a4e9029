"""De-duplication of conversations and the contamination guard.

Exact duplicates share a content hash (roles and normalised texts, ids and timestamps ignored).
Near duplicates are found with MinHash LSH (datasketch) over word 3-shingles of the whole conversation:
two conversations whose estimated Jaccard similarity is above the threshold count as one.
The same index, filled with the evaluation and golden prompts, keeps them out of training data.
"""

from __future__ import annotations

import hashlib
import re
import zlib

from datasketch import MinHash, MinHashLSH

_WORD = re.compile(r"\w+")
NUM_PERM = 64


def content_hash(conv: dict) -> str:
    h = hashlib.sha256()
    for m in conv["messages"]:
        h.update(m["role"].encode())
        h.update(b"\x1f")
        h.update(m["text"].casefold().encode())
        h.update(b"\x1e")
    return h.hexdigest()[:32]


def _shingles(text: str, k: int = 3) -> set[bytes]:
    words = _WORD.findall(text.casefold())
    if len(words) < k:
        return {" ".join(words).encode()}
    return {" ".join(words[i : i + k]).encode() for i in range(len(words) - k + 1)}


def _crc32(data: bytes) -> int:
    return zlib.crc32(data)  # stable across processes (unlike hash()), and cheaper than datasketch's sha1


_TEMPLATE = MinHash(num_perm=NUM_PERM, seed=1, hashfunc=_crc32)  # permutations derived once, not per sketch


def minhash(text: str) -> MinHash:
    mh = MinHash(num_perm=NUM_PERM, seed=1, hashfunc=_crc32, permutations=_TEMPLATE.permutations,
                 scheme=_TEMPLATE.scheme)
    mh.update_batch(list(_shingles(text)))
    return mh


def conversation_text(conv: dict) -> str:
    return " ".join(m["text"] for m in conv["messages"])


class Deduplicator:
    """Remembers what it has seen; `check` says 'exact', 'near' or None (new)."""

    def __init__(self, threshold: float = 0.9, *, near: bool = True):
        self.hashes: set[str] = set()
        self.threshold = threshold
        # LSH at a lower threshold finds candidates with high recall; the MinHash estimate then decides.
        self.lsh = MinHashLSH(threshold=max(0.5, threshold - 0.3), num_perm=NUM_PERM) if near else None
        self.sketches: dict[str, MinHash] = {}

    def add_hash(self, digest: str) -> None:
        self.hashes.add(digest)

    def check(self, conv: dict, digest: str) -> str | None:
        if digest in self.hashes:
            return "exact"
        self.hashes.add(digest)
        if self.lsh is not None:
            mh = minhash(conversation_text(conv))
            if any(self.sketches[key].jaccard(mh) >= self.threshold for key in self.lsh.query(mh)):
                return "near"
            key = f"c{len(self.sketches)}"
            self.sketches[key] = mh
            self.lsh.insert(key, mh)
        return None


class ContaminationGuard:
    """Flags conversations whose customer text matches (or nearly matches) an evaluation prompt.

    Exact: the same words. Near: a customer message of 5+ words containing at least `threshold` of a
    protected prompt's word 3-shingles (an inverted index over the shingles: a few set look-ups a message).
    """

    def __init__(self, prompts: list[str], threshold: float = 0.8):
        self.exact = {_key(p) for p in prompts}
        self.threshold = threshold
        self.sizes = [len(_shingles(p)) for p in prompts]
        self.index: dict[bytes, list[int]] = {}
        for i, p in enumerate(prompts):
            for sh in _shingles(p):
                self.index.setdefault(sh, []).append(i)

    def hit(self, conv: dict) -> str | None:
        for m in conv["messages"]:
            if m["role"] != "customer":
                continue
            if _key(m["text"]) in self.exact:
                return m["text"]
            shingles = _shingles(m["text"])
            if len(shingles) < 3:
                continue
            counts: dict[int, int] = {}
            for sh in shingles:
                for i in self.index.get(sh, ()):
                    counts[i] = counts.get(i, 0) + 1
            if any(n >= self.threshold * self.sizes[i] for i, n in counts.items()):
                return m["text"]
        return None


def _key(text: str) -> str:
    return " ".join(_WORD.findall(text.casefold()))
