"""Paired bootstrap confidence intervals: is the candidate worse than a baseline on the same prompts?

Both models answered the same items, so the comparison resamples the items (with replacement) and
recomputes the mean per-item difference each time. The interval is the percentile interval of those
means. Differences are oriented so that positive means the candidate is better.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class PairedInterval:
    n: int
    delta: float          # mean(candidate - baseline), oriented so that positive = candidate better
    low: float
    high: float
    confidence: float


def paired_interval(candidate, baseline, *, higher_is_better: bool, resamples: int, confidence: float,
                    seed: int) -> PairedInterval:
    cand, base = np.asarray(candidate, dtype=float), np.asarray(baseline, dtype=float)
    if cand.shape != base.shape or cand.ndim != 1 or len(cand) == 0:
        raise ValueError(f"paired bootstrap needs two equal, non-empty score vectors (got {cand.shape} and "
                         f"{base.shape})")
    diff = cand - base if higher_is_better else base - cand
    low, high = mean_interval(diff, resamples=resamples, confidence=confidence, seed=seed)
    return PairedInterval(len(diff), float(diff.mean()), low, high, confidence)


def mean_interval(values, *, resamples: int, confidence: float, seed: int) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean of `values` (non-empty, 1-D)."""
    values = np.asarray(values, dtype=float)
    rng = np.random.default_rng(seed)
    means = np.empty(resamples)
    for start in range(0, resamples, 500):  # chunks keep memory flat for large sets
        stop = min(start + 500, resamples)
        idx = rng.integers(0, len(values), size=(stop - start, len(values)))
        means[start:stop] = values[idx].mean(axis=1)
    alpha = (1 - confidence) / 2
    low, high = np.quantile(means, [alpha, 1 - alpha])
    return float(low), float(high)
