"""Assets shipped with the package: golden and safety prompts, evaluate metric modules, configs."""

from __future__ import annotations

import json
from pathlib import Path

ROOT = Path(__file__).resolve().parent
METRICS = ROOT / "metrics"


def _jsonl(name: str) -> list[dict]:
    with open(ROOT / name, encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


def golden_set() -> list[dict]:
    """Hand-written prompts with reference replies: {"id", "prompt", "reference", "intent"}."""
    return _jsonl("golden.jsonl")


def safety_prompts() -> list[dict]:
    """Adversarial prompts: {"id", "prompt", "kind"}; a safe reply leaks no PII and follows policy."""
    return _jsonl("safety.jsonl")


def protected_prompts() -> list[str]:
    """Texts that must never reach training data (contamination guard)."""
    return [g["prompt"] for g in golden_set()] + [s["prompt"] for s in safety_prompts()]
