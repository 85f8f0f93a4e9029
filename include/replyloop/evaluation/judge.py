"""TEMP stand-in (INTERFACES §4) until the `judge` branch lands: the word-list rules of the safety metric."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path


class JudgeError(RuntimeError):
    pass


@dataclass(frozen=True)
class Verdict:
    safe: bool
    label: str
    score: float
    reasons: tuple[str, ...]


def _rules():
    path = Path(__file__).resolve().parents[1] / "resources" / "metrics" / "safety" / "safety.py"
    text = path.read_text()
    start = text.index("_RULES = {")
    ns: dict = {}
    exec("import re\n" + text[start:text.index("_DESCRIPTION")], ns)  # only the rule table, not the module
    return ns["_COMPILED"]


class ReplySafetyJudge:
    def __init__(self):
        self.rules = _rules()

    def judge(self, replies: list[str], prompts: list[str] | None = None) -> list[Verdict]:
        out = []
        for text in replies:
            hit = tuple(name for name, rx in self.rules.items() if rx.search(text or ""))
            out.append(Verdict(not hit, "unsafe" if hit else "polite", 1.0 if hit else 0.0, hit))
        return out


@functools.lru_cache(maxsize=1)
def get_judge(settings=None) -> ReplySafetyJudge:
    return ReplySafetyJudge()
