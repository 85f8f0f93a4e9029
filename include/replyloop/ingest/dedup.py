"""De-duplication of conversations and the contamination guard.

Exact duplicates share a content hash (roles and normalised texts; ids and timestamps ignored).

Near duplicates: each conversation gets a MinHash signature of `NUM_PERM` values over its word
3-shingles; two conversations whose signatures agree in at least `threshold` of the positions count as
one, the first seen is kept. Signatures are computed for thousands of conversations at once with numpy
(multiply-add-shift hashing of crc32 word hashes, stable across processes, so parallel workers produce
comparable signatures); a per-conversation MinHash object (datasketch) cost more than the rest of
ingestion together. Candidates come from LSH banding: the positions are split into d + 2 bands, d being
the mismatches the threshold allows, and conversations are grouped by the keys of every *pair* of bands.
A pair within the threshold leaves at least two bands whole, so it always shares a group: recall is exact
with respect to the estimate, and groups are small, so few pairs below the threshold are compared.

The contamination guard flags conversations whose customer text matches, or nearly matches, an
evaluation or golden prompt, so those never reach training data.
"""

from __future__ import annotations

import hashlib
import itertools
import math
import re
import zlib
from collections.abc import Iterable, Sequence

import numpy as np

_WORD = re.compile(r"\w+")
NUM_PERM = 64
_SHINGLE = 3
_rng = np.random.default_rng(20261123)
_PERM_A = _rng.integers(1, 2**63, NUM_PERM, dtype=np.uint64) | np.uint64(1)
_PERM_B = _rng.integers(0, 2**63, NUM_PERM, dtype=np.uint64)
_SH_MUL = _rng.integers(1, 2**63, _SHINGLE, dtype=np.uint64) | np.uint64(1)
_SH_ADD = np.uint64(_rng.integers(0, 2**63, dtype=np.uint64))
_BAND_MUL = _rng.integers(1, 2**63, NUM_PERM, dtype=np.uint64) | np.uint64(1)
_SHIFT = np.uint64(32)
_PAIR_MUL = np.uint64(0x9E3779B97F4A7C15)


def words(text: str) -> list[str]:
    return _WORD.findall(text.casefold())


def content_hash(conv: dict) -> str:
    h = hashlib.sha256()
    for m in conv["messages"]:
        h.update(m["role"].encode())
        h.update(b"\x1f")
        h.update(m["text"].casefold().encode())
        h.update(b"\x1e")
    return h.hexdigest()[:32]


class _WordHashes(dict):
    """crc32 of each word, remembered: a vocabulary is small next to the number of words read."""

    def __missing__(self, word: str) -> int:
        if len(self) >= 1_000_000:  # an unbounded vocabulary (ids, typos) must not grow without end
            self.clear()
        value = self[word] = zlib.crc32(word.encode())
        return value


_WORD_HASHES = _WordHashes()


class Sketcher:
    """Collects the words of many conversations, then returns their MinHash signatures in one go."""

    CHUNK = 20_000  # conversations sketched at a time: scratch memory stays bounded for any input size

    def __init__(self) -> None:
        self._hashes: list[int] = []
        self._lengths: list[int] = []
        self._done: list[np.ndarray] = []

    def add(self, conversation_words: Sequence[str]) -> None:
        cache = _WORD_HASHES
        hashes = [cache[w] for w in conversation_words]
        if len(hashes) < _SHINGLE:  # a short conversation is one shingle of what it has
            hashes += [0] * (_SHINGLE - len(hashes))
        self._hashes.extend(hashes)
        self._lengths.append(len(hashes))
        if len(self._lengths) >= self.CHUNK:
            self._done.append(self._sketch())

    def signatures(self) -> np.ndarray:
        """(conversations, NUM_PERM) uint32, in the order they were added."""
        parts = [*self._done, self._sketch()]
        self._done = []
        return np.concatenate(parts)

    def _sketch(self) -> np.ndarray:
        lengths = np.asarray(self._lengths, dtype=np.int64)
        out = np.empty((len(lengths), NUM_PERM), dtype=np.uint32)
        if not len(lengths):
            return out
        flat = np.asarray(self._hashes, dtype=np.uint64)
        self._hashes, self._lengths = [], []
        # shingle i = words i, i+1, i+2; valid when all three lie in the same conversation
        sh = flat[:-2] * _SH_MUL[0] + flat[1:-1] * _SH_MUL[1] + flat[2:] * _SH_MUL[2] + _SH_ADD
        starts = np.concatenate(([0], np.cumsum(lengths)[:-1]))
        pos = np.arange(len(flat) - 2) - np.repeat(starts, lengths)[:-2]
        sh = sh[pos <= np.repeat(lengths, lengths)[:-2] - _SHINGLE] >> _SHIFT  # 32-bit, grouped by conversation
        offsets = np.concatenate(([0], np.cumsum(lengths - (_SHINGLE - 1))[:-1]))
        scratch = np.empty_like(sh)
        for k in range(NUM_PERM):  # one permutation at a time over all shingles: 1-D passes stay in cache
            np.multiply(sh, _PERM_A[k], out=scratch)
            scratch += _PERM_B[k]
            scratch >>= _SHIFT
            out[:, k] = np.minimum.reduceat(scratch, offsets)
        return out


def sketch_tokens(message_words: Sequence[Sequence[str]], texts: Sequence[str]) -> list[str]:
    """What a conversation's signature is made of: its words, or, when it has none (emoji, punctuation),
    its whitespace-separated pieces, so that such conversations are not all alike."""
    tokens = [w for ws in message_words for w in ws]
    return tokens or [t for text in texts for t in text.split()]


def signatures(conversations: Sequence[dict]) -> np.ndarray:
    sketcher = Sketcher()
    for conv in conversations:
        texts = [m["text"] for m in conv["messages"]]
        sketcher.add(sketch_tokens([words(t) for t in texts], texts))
    return sketcher.signatures()


class Deduplicator:
    """Decides, for a batch in arrival order, which conversations are exact or near duplicates.

    `known` are content hashes already in the curated snapshot (exact duplicates of those are dropped).
    """

    def __init__(self, threshold: float = 0.9, *, known: Iterable[str] = ()):
        if not 0.5 <= threshold <= 1.0:
            raise ValueError(f"near-duplicate threshold must lie in [0.5, 1], got {threshold}")
        self.threshold = threshold
        self.hashes: set[str] = set(known)
        self.agree = math.ceil(threshold * NUM_PERM)

    def resolve(self, digests: Sequence[str], sigs: np.ndarray,
                groups: Sequence[str] | None = None) -> list[str | None]:
        """'exact', 'near' or None (kept) for each conversation, the first seen being kept.

        With `groups` (a label per conversation, e.g. its landing partition), near duplicates are only
        looked for within a group, so the outcome for one group does not depend on which other groups
        are in the batch; exact duplicates are looked for everywhere.
        """
        status: list[str | None] = [None] * len(digests)
        by_group: dict[str | None, list[int]] = {}
        for i, digest in enumerate(digests):
            if digest in self.hashes:
                status[i] = "exact"
            else:
                self.hashes.add(digest)
                by_group.setdefault(groups[i] if groups is not None else None, []).append(i)
        for members in by_group.values():
            for j in self._near(sigs[members]):
                status[members[j]] = "near"
        return status

    def _near(self, sig: np.ndarray) -> list[int]:
        """Indices (in order) of the signatures that agree with an earlier kept one in `agree`+ positions.

        The positions are split into d + 2 bands, d being the mismatches allowed: a pair within the
        threshold leaves at least two bands whole, so it shares the key of some *pair* of bands.
        Grouping by the keys of every pair of bands gives small groups (16 positions must agree at 0.9),
        and a pair above the threshold always meets in one: the comparisons are exact, and few.
        """
        import pandas as pd  # its hash-based factorize groups several times faster than a sort

        n = len(sig)
        if n < 2:
            return []
        n_bands = NUM_PERM - self.agree + 2
        cuts = np.linspace(0, NUM_PERM, n_bands + 1).astype(int)
        band = [(sig[:, lo:hi].astype(np.uint64) * _BAND_MUL[lo:hi]).sum(axis=1)  # wraps: a hash
                for lo, hi in zip(cuts[:-1], cuts[1:])]
        rows, groups, offset = [], [], 0
        for a, b in itertools.combinations(range(n_bands), 2):
            codes, uniques = pd.factorize(band[a] * _PAIR_MUL + band[b])
            shared = np.flatnonzero(np.bincount(codes)[codes] > 1)
            rows.append(shared)
            groups.append(codes[shared] + offset)
            offset += len(uniques)
        # Only conversations that share a group with another can be near duplicates; kept ones are
        # indexed by group, and each later one is compared (numpy) with the kept ones of its groups.
        row_of, group_of = np.concatenate(rows), np.concatenate(groups)
        order = np.argsort(row_of, kind="stable")
        row_of, group_of = row_of[order], group_of[order]
        starts = np.flatnonzero(np.r_[True, row_of[1:] != row_of[:-1]]) if len(row_of) else row_of
        buckets: dict[int, list[int]] = {}
        dups = []
        for j, mine in zip(row_of[starts].tolist(), np.split(group_of, starts[1:])):
            mine = mine.tolist()
            candidates = {c for g in mine for c in buckets.get(g, ())}
            if candidates and int((sig[list(candidates)] == sig[j]).sum(axis=1).max()) >= self.agree:
                dups.append(j)
                continue
            for g in mine:
                buckets.setdefault(g, []).append(j)
        return dups


class ContaminationGuard:
    """Flags conversations whose customer text matches (or nearly matches) an evaluation prompt.

    Exact: the same words. Near: a customer message of 5+ words containing at least `threshold` of a
    protected prompt's word 3-shingles (an inverted index over the shingles: a few set look-ups a message).
    """

    def __init__(self, prompts: list[str], threshold: float = 0.8):
        self.exact = {" ".join(words(p)) for p in prompts}
        self.threshold = threshold
        self.sizes = [len(_shingles(words(p))) for p in prompts]
        self.index: dict[tuple[str, ...], list[int]] = {}
        for i, p in enumerate(prompts):
            for sh in _shingles(words(p)):
                self.index.setdefault(sh, []).append(i)

    def hit(self, conv: dict, conversation_words: list[list[str]] | None = None) -> str | None:
        """The customer text that matches, or None. `conversation_words` (words of each message) saves
        the tokenisation when the caller has it already."""
        for k, m in enumerate(conv["messages"]):
            if m["role"] != "customer":
                continue
            ws = conversation_words[k] if conversation_words is not None else words(m["text"])
            if " ".join(ws) in self.exact:
                return m["text"]
            if len(ws) < _SHINGLE + 2:
                continue
            counts: dict[int, int] = {}
            for sh in set(zip(ws, ws[1:], ws[2:])):
                for i in self.index.get(sh, ()):
                    counts[i] = counts.get(i, 0) + 1
            if any(n >= self.threshold * self.sizes[i] for i, n in counts.items()):
                return m["text"]
        return None


def _shingles(ws: list[str]) -> set[tuple[str, ...]]:
    if len(ws) < _SHINGLE:
        return {tuple(ws)}
    return set(zip(*(ws[i:] for i in range(_SHINGLE))))
