"""Per-key rate limit: a token bucket (burst, then a steady rate), thread-safe, in process memory.

Hand-written (20 lines) rather than a library: the limit is per process, which is what one server
needs; several replicas behind a balancer each enforce it (say N times the rate in all).
"""

from __future__ import annotations

import threading
import time


class RateLimiter:
    def __init__(self, per_minute: float, burst: int, clock=time.monotonic):
        self.rate = per_minute / 60.0
        self.burst = burst
        self.clock = clock
        self._buckets: dict[str, tuple[float, float]] = {}
        self._lock = threading.Lock()

    def take(self, key: str) -> float:
        """0.0 when the request may go ahead, else the seconds until it could."""
        now = self.clock()
        with self._lock:
            tokens, last = self._buckets.get(key, (float(self.burst), now))
            tokens = min(self.burst, tokens + (now - last) * self.rate)
            if tokens >= 1.0:
                self._buckets[key] = (tokens - 1.0, now)
                return 0.0
            self._buckets[key] = (tokens, now)
            return (1.0 - tokens) / self.rate
