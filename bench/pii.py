"""Benchmark of the PII redactor against a naive three-regex baseline, side by side.

    python bench/pii.py [--messages 100000] [--repeat 3]

Prints precision/recall on the labelled set (tests/data/pii_cases.jsonl) overall and per kind, then
redaction throughput on one core for the labelled texts repeated to --messages messages, and, when the
package's demo data generator is available, for synthetic customer-service conversations (a more
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

from replyloop.pii import KINDS, NaiveRedactor, PiiRedactor, score  # noqa: E402

CASES = ROOT / "tests" / "data" / "pii_cases.jsonl"
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


def ratio(a: float, b: float) -> str:
    return f"{a / b:.2f}x" if b else "  n/a"


def print_quality(ours: dict, naive: dict) -> None:
    print(f"{'kind':<9}{'labelled':>9} | {'ours P':>7}{'ours R':>8} | {'naive P':>8}{'naive R':>8}")
    print("-" * 55)
    for kind in KINDS:
        o = ours["per_kind"].get(kind)
        if o is None:
            continue
        n = naive["per_kind"].get(kind, {"precision": 1.0, "recall": 0.0, "detected": 0})
        naive_p = f"{n['precision']:.3f}" if n.get("detected") else "-"
        print(f"{kind:<9}{o['labelled']:>9} | {o['precision']:>7.3f}{o['recall']:>8.3f} | "
              f"{naive_p:>8}{n['recall']:>8.3f}")
    o, n = ours["overall"], naive["overall"]
    print("-" * 55)
    print(f"{'overall':<9}{o['labelled']:>9} | {o['precision']:>7.3f}{o['recall']:>8.3f} | "
          f"{n['precision']:>8.3f}{n['recall']:>8.3f}")
    print(f"{'f1':<9}{'':>9} | {o['f1']:>15.3f} | {n['f1']:>16.3f}   ours/naive f1 {ratio(o['f1'], n['f1'])}")


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
    q_ours, q_naive = score(ours, cases), score(naive, cases)
    avg = sum(map(len, texts)) / len(texts)
    print(f"PII redaction benchmark — {len(cases)} labelled cases, {q_ours['overall']['labelled']} PII spans "
          f"({CASES.relative_to(ROOT)})\n")
    print("Quality on the labelled set (P = precision, R = recall; match = same kind, >= 80 % overlap)")
    print_quality(q_ours, q_naive)

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
