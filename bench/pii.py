"""Benchmark of the PII detector against a naive three-regex baseline, side by side.

    python bench/pii.py [--messages 100000] [--repeat 3]

Prints precision/recall overall and per kind on
  * the labelled input set (tests/data/pii_cases.jsonl), its two parts apart: "dev" (used to tune the
    rules) and "heldout" (written from the labelling policy before the rules changed, never tuned on);
  * the generated-reply set (tests/data/pii_cases_replies.jsonl) for `check_reply`, dev and held-out,
    against the naive baseline and against `find_leaks` alone (no echo);
  * the greeting-name set (tests/data/pii_cases_names.jsonl: agent and customer turns) for the ingestion
    redaction, dev and held-out, against the same detector without the NAME rule and the naive baseline;
then redaction throughput on one core for the labelled texts repeated to --messages messages, and, when
the package's demo data generator is available, for synthetic customer-service conversations (a more
typical mix: most messages carry no PII). Throughput is the best of --repeat runs; "cpu" divides by the
process CPU time (stable on a busy machine), "wall" by elapsed time.
"""

from __future__ import annotations

import argparse
import html
import json
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "include"))

from replyloop.pii import (  # noqa: E402
    REPLY_KINDS, NaiveRedactor, PiiRedactor, find_leaks, score, score_replies)

CASES = ROOT / "tests" / "data" / "pii_cases.jsonl"
REPLIES = ROOT / "tests" / "data" / "pii_cases_replies.jsonl"
NAMES = ROOT / "tests" / "data" / "pii_cases_names.jsonl"
BRAND = "AcmeSupport"


def load_cases(path: Path = CASES) -> list[dict]:
    with path.open(encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


def repeat_to(texts: Sequence[str], n: int) -> list[str]:
    return [texts[i % len(texts)] for i in range(n)]


def throughput(redact: Callable[[str], object], messages: Sequence[str], repeat: int) -> tuple[float, float]:
    """(messages per CPU second, messages per wall second), best of `repeat` runs."""
    best_cpu = best_wall = float("inf")
    for _ in range(repeat):
        cpu, wall = time.process_time(), time.perf_counter()
        for text in messages:
            redact(text)
        best_cpu = min(best_cpu, time.process_time() - cpu)
        best_wall = min(best_wall, time.perf_counter() - wall)
    return len(messages) / best_cpu, len(messages) / best_wall


def demo_texts(conversations: int = 3000) -> list[str] | None:
    """Message texts of synthetic conversations (HTML-unescaped as ingestion does), if available."""
    try:
        from replyloop.demo_data import iter_canonical_conversations
    except ImportError:
        return None
    return [html.unescape(m["text"]) for conv in iter_canonical_conversations(conversations, seed=7)
            for m in conv["messages"]]


class WithoutNames:
    """The detector as it was before greeting names were redacted on the way in (every kind but NAME)."""

    def __init__(self, redactor: PiiRedactor):
        self.redactor = redactor

    def find(self, text: str) -> list:
        return [s for s in self.redactor.find(text) if s.kind != "NAME"]


def ratio(a: float, b: float) -> str:
    return f"{a / b:.2f}x" if b else "  n/a"


def _pr(row: dict | None) -> str:
    if row is None:
        return f"{'-':>7}{'-':>7}"
    precision = f"{row['precision']:.3f}" if row["detected"] else "-"
    return f"{precision:>7}{row['recall']:>7.3f}"


def print_quality(title: str, results: dict[str, dict]) -> None:
    """One table: rows are kinds, column pairs (P, R) are the detectors in `results` (name -> score)."""
    names = list(results)
    first = results[names[0]]
    print(f"\n{title}: {first['cases']} cases, {first['overall']['labelled']} labelled spans")
    print(f"{'kind':<9}{'spans':>6} | " + " | ".join(f"{n + ' P':>7}{'R':>7}" for n in names))
    print("-" * (18 + 17 * len(names)))
    kinds = [k for k in REPLY_KINDS if any(k in r["per_kind"] for r in results.values())]
    for kind in kinds:
        labelled = first["per_kind"].get(kind, {}).get("labelled", 0)
        cells = " | ".join(_pr(r["per_kind"].get(kind)) for r in results.values())
        print(f"{kind:<9}{labelled:>6} | {cells}")
    print("-" * (18 + 17 * len(names)))
    print(f"{'overall':<9}{first['overall']['labelled']:>6} | "
          + " | ".join(_pr(r["overall"]) for r in results.values()))
    print(f"{'f1':<9}{'':>6} | " + " | ".join(f"{r['overall']['f1']:>14.3f}" for r in results.values()))


def print_throughput(rows: list[tuple[str, int, tuple[float, float], tuple[float, float]]]) -> None:
    print(f"{'input':<34}{'msgs':>8}{'ours cpu/s':>12}{'naive cpu/s':>13}{'ours/naive':>11}"
          f"{'ours wall/s':>13}{'naive wall/s':>14}")
    print("-" * 105)
    for name, count, (o_cpu, o_wall), (n_cpu, n_wall) in rows:
        print(f"{name:<34}{count:>8,}{o_cpu:>12,.0f}{n_cpu:>13,.0f}{ratio(o_cpu, n_cpu):>11}"
              f"{o_wall:>13,.0f}{n_wall:>14,.0f}")


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args(argv)

    ours, naive = PiiRedactor(keep_handles=[BRAND]), NaiveRedactor()
    cases = load_cases()
    texts = [c["text"] for c in cases]
    avg = sum(map(len, texts)) / len(texts)
    print(f"PII detection benchmark — {len(cases)} labelled input cases ({CASES.relative_to(ROOT)}), "
          f"{len(load_cases(REPLIES))} generated replies ({REPLIES.relative_to(ROOT)})")
    print("P = precision, R = recall; a match is the same kind with >= 80 % overlap; '-' = nothing detected")
    for part in ("dev", "heldout"):
        subset = [c for c in cases if c["part"] == part]
        print_quality(f"Input redaction, {part} part",
                      {"ours": score(ours, subset), "naive": score(naive, subset)})
    replies = load_cases(REPLIES)
    for part in ("dev", "heldout"):
        subset = [c for c in replies if c["part"] == part]
        print_quality(f"Generated replies (check_reply), {part} part", {
            "ours": score_replies(subset),
            "leaks": score_replies(subset, lambda text, prompt: find_leaks(text)),
            "naive": score_replies(subset, naive)})
    print("  (ours = check_reply with the prompt; leaks = find_leaks alone, the gate's metric before "
          "issue 10, with greeting names since they are redacted on the way in)")
    names = load_cases(NAMES)
    for part in ("dev", "heldout"):
        subset = [c for c in names if c["part"] == part]
        print_quality(f"Greeting names in conversation turns (ingestion redaction), {part} part", {
            "ours": score(ours, subset), "no-name": score(WithoutNames(ours), subset),
            "naive": score(naive, subset)})
    print("  (no-name = the same detector without the NAME rule, i.e. ingestion before names were redacted)")

    rows = []
    labelled = repeat_to(texts, args.messages)
    rows.append((f"labelled texts (avg {avg:.0f} chars)", len(labelled),
                 throughput(ours.redact, labelled, args.repeat),
                 throughput(naive.redact, labelled, args.repeat)))
    demo = demo_texts()
    if demo:
        typical = repeat_to(demo, args.messages)
        avg_demo = sum(map(len, demo)) / len(demo)
        rows.append((f"demo conversations (avg {avg_demo:.0f} chars)", len(typical),
                     throughput(ours.redact, typical, args.repeat),
                     throughput(naive.redact, typical, args.repeat)))
    print(f"\nThroughput, one core, best of {args.repeat} (messages/s; redact() per message)")
    print_throughput(rows)


if __name__ == "__main__":
    main()
