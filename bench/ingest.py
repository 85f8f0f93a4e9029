"""Ingestion throughput and peak memory, end to end, against a read-only baseline run side by side.

For each size (messages), the script writes generated canonical conversations as gzip JSONL partitions
into a fresh local lake, then runs in a child process (so peak RSS is that run's alone):
  - replyloop: the full `run_ingest` (normalise, redact, dedup, contamination guard, GX, snapshot);
  - baseline:  the floor any pipeline pays: read + gunzip + json.loads + one Parquet write, nothing else.
It prints messages/s, peak RSS and the ratio of the two, and how cost grows with size. Then one more day
(a tenth of the largest size) lands on the largest lake and is ingested incrementally: the history is not
loaded, so that night costs about what a fresh lake of its size costs. Peak RSS is that
of the whole process tree (the run and its worker processes, sampled every 20 ms with psutil, and never
less than the run's own ru_maxrss), so parallel ingestion cannot hide memory in its workers.

    python bench/ingest.py                  # 100k and 1M messages
    python bench/ingest.py --sizes 20000    # quick look
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from datetime import date, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "include"))
FILES_PER_DAY = 4
DAYS = 4


def write_lake(root: Path, messages: int, *, first_day: int = 0, days: int = DAYS, seed: int = 11) -> int:
    """Generated conversations spread over `days` daily partitions; returns the messages written."""
    from replyloop.demo_data import iter_canonical_conversations

    written, conv_budget = 0, messages // 3 + 1
    per_file = conv_budget // (days * FILES_PER_DAY) + 1
    gen = iter_canonical_conversations(conv_budget, seed=seed, day=date(2026, 11, 1))
    for d in range(first_day, first_day + days):
        day = date(2026, 11, 1) + timedelta(days=d)
        folder = root / "raw" / "conversations" / f"dt={day}"
        folder.mkdir(parents=True, exist_ok=True)
        for f in range(FILES_PER_DAY):
            with gzip.open(folder / f"part-{f:04d}.jsonl.gz", "wt", compresslevel=1) as fh:
                for _ in range(per_file):
                    conv = next(gen, None)
                    if conv is None or written >= messages:
                        break
                    written += len(conv["messages"])
                    fh.write(json.dumps(conv) + "\n")
    return written


class TreeRss:
    """Peak resident memory of this process and all its descendants, sampled in a thread."""

    def __init__(self, every: float = 0.02):
        import threading

        import psutil

        self.proc, self.every, self.peak = psutil.Process(), every, 0
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._sample, daemon=True)
        self.thread.start()

    def _sample(self) -> None:
        import psutil

        while not self.done.is_set():
            total = 0
            for p in [self.proc, *self.proc.children(recursive=True)]:
                try:
                    total += p.memory_info().rss
                except psutil.Error:  # a worker that just exited
                    pass
            self.peak = max(self.peak, total)
            self.done.wait(self.every)

    def stop(self) -> float:
        self.done.set()
        self.thread.join()
        own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        return max(self.peak, own) / 2**20


def child(mode: str, lake: str) -> None:
    """Runs in a subprocess; prints one JSON line with seconds and peak RSS."""
    rss = TreeRss()
    started = time.perf_counter()
    if mode == "replyloop":
        import logging

        logging.basicConfig(level=logging.WARNING)
        from datetime import UTC, datetime

        from replyloop.ingest.pipeline import run_ingest
        from replyloop.settings import Settings

        settings = Settings(home=Path(lake).parent / "home", lake_uri=lake, volume_factor=1e9)
        manifest = run_ingest(settings, now=datetime(2026, 12, 1, tzinfo=UTC))
        extra = {"counts": {k: manifest["counts"][k] for k in ("raw", "curated", "quarantined", "duplicates")}}
    else:
        import pyarrow as pa
        import pyarrow.parquet as pq

        rows = {"conversation_id": [], "role": [], "text": []}
        for path in sorted(Path(lake).rglob("*.jsonl.gz")):
            with gzip.open(path, "rb") as fh:
                for line in fh:
                    conv = json.loads(line)
                    for m in conv["messages"]:
                        rows["conversation_id"].append(conv["conversation_id"])
                        rows["role"].append(m["role"])
                        rows["text"].append(m["text"])
        pq.write_table(pa.table(rows), Path(lake).parent / "baseline.parquet")
        extra = {}
    secs = time.perf_counter() - started
    peak_mb = rss.stop()
    print(json.dumps({"seconds": secs, "peak_rss_mb": peak_mb, **extra}))


def measure(mode: str, lake: Path) -> dict:
    out = subprocess.run([sys.executable, __file__, "--child", mode, str(lake)], capture_output=True, text=True,
                         env={**os.environ, "GX_ANALYTICS_ENABLED": "False", "TQDM_DISABLE": "1"})
    if out.returncode != 0:
        raise SystemExit(f"{mode} run failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--no-nightly", action="store_true",
                        help="skip the incremental run (one more day on top of the largest lake)")
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(*args.child)
        return
    print(f"{'messages':>10} {'run':>10} {'seconds':>8} {'msgs/s':>9} {'peak RSS':>10} {'ratio vs baseline':>18}")
    previous, night = None, None
    for size in args.sizes:
        with tempfile.TemporaryDirectory() as tmp:
            lake = Path(tmp) / "lake"
            n = write_lake(lake, size)
            base = measure("baseline", lake)
            ours = measure("replyloop", lake)
            if size == max(args.sizes) and not args.no_nightly:  # one more day lands on top of the history
                extra = write_lake(lake, size // 10, first_day=DAYS, days=1, seed=12)
                night = (extra, n, measure("replyloop", lake))
        for name, r in (("baseline", base), ("replyloop", ours)):
            ratio = "" if name == "baseline" else f"{r['seconds'] / base['seconds']:.1f}x time, " \
                                                  f"{r['peak_rss_mb'] / base['peak_rss_mb']:.1f}x RSS"
            print(f"{n:>10,} {name:>10} {r['seconds']:>8.1f} {n / r['seconds']:>9,.0f} "
                  f"{r['peak_rss_mb']:>8,.0f}MB {ratio:>18}")
        if "counts" in ours:
            print(f"{'':>10} counts: {ours['counts']}")
        if previous:
            pn, ps = previous
            print(f"{'':>10} growth: {n / pn:.1f}x messages -> {ours['seconds'] / ps:.1f}x time "
                  f"({'sub' if ours['seconds'] / ps < n / pn else 'super'}-linear)")
        previous = (n, ours["seconds"])
    if night:
        extra, history, r = night
        print(f"{extra:>10,} {'nightly':>10} {r['seconds']:>8.1f} {extra / r['seconds']:>9,.0f} "
              f"{r['peak_rss_mb']:>8,.0f}MB   one new day on a lake of {history:,} messages: the history is "
              "not loaded, so this compares with a fresh lake of the same size")
    print("targets (issue 3): >= 20,000 messages/s on 2 cores; peak RSS < 2 GB at 1M messages")


if __name__ == "__main__":
    main()
