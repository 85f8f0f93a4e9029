"""The infra check: the candidate, loaded through the serving code path, answers golden prompts one at a
time (as the API does) within the p95 latency budget of the settings."""

from __future__ import annotations

import time

import numpy as np

from replyloop.evaluation.sets import EvalSet
from replyloop.settings import Settings


def latency_check(settings: Settings, gen, golden: EvalSet, *, path: str) -> dict:
    prompts = [it.messages for it in golden.items[: settings.gate_latency_prompts]]
    seconds, answered = [], 0
    for messages in prompts:
        started = time.perf_counter()
        reply = gen.reply([messages])
        seconds.append(time.perf_counter() - started)
        answered += int(bool(reply and isinstance(reply[0], str) and reply[0].strip()))
    p95 = float(np.percentile(seconds, 95)) if seconds else float("nan")
    return {"asked": len(prompts), "answered": answered, "p95_s": p95,
            "mean_s": float(np.mean(seconds)) if seconds else float("nan"),
            "budget_s": settings.gate_latency_p95_seconds, "path": path}
