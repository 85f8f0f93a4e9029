"""Progress lines a person can follow in the task log and the terminal: step, loss, tokens/s, ETA."""

from __future__ import annotations

import logging
import time

log = logging.getLogger("replyloop.training.progress")


def _clock(seconds: float) -> str:
    seconds = int(max(seconds, 0))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


class Progress:
    """Logs one line at most every `every_seconds` (and at the first and last step)."""

    def __init__(self, total_steps: int, start_step: int = 0, every_seconds: float = 5.0):
        self.total, self.start_step, self.every = total_steps, start_step, every_seconds
        self.started = self.last_line = time.monotonic()
        self.tokens_since = 0
        self.window_start = self.started

    def step(self, step: int, loss: float, lr: float, tokens: int) -> float:
        """Record one optimizer step; return the supervised tokens/s of this step's window."""
        now = time.monotonic()
        self.tokens_since += tokens
        rate = self.tokens_since / max(now - self.window_start, 1e-9)
        if now - self.last_line >= self.every or step in (self.start_step + 1, self.total):
            per_step = (now - self.started) / max(step - self.start_step, 1)
            log.info("step %d/%d  loss %.4f  lr %.2e  %.0f tok/s  elapsed %s  eta %s", step, self.total, loss, lr,
                     rate, _clock(now - self.started), _clock(per_step * (self.total - step)))
            self.last_line = now
        self.tokens_since, self.window_start = 0, now
        return rate
