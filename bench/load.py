"""Load test on loopback: N requests at C concurrent clients, each reply rated (every 5th corrected).

    python bench/load.py [--home DIR] [--requests 2000] [--clients 16] [--timeout 1800] [--base-model DIR]

Serves the bench home's champion (see bench/serve.py) with `replyloop serve` in a subprocess, sends the
golden conversations round-robin, stops the server with SIGTERM (graceful shutdown flushes the reply
log), then reads the lake: every reply id the clients received must be in raw/replies exactly once and
every accepted feedback event in raw/feedback. Bounded in count (--requests) and time (--timeout).
Prints throughput, latency, status counts, and lost or duplicated records (all must be zero).
"""

from __future__ import annotations

import argparse
import json
import os
import time
from collections import Counter
from pathlib import Path

from _serving import ROOT, Server, golden_conversations, pct, prepare_home, run_clients


def lake_ids(lake_root: Path, prefix: str, field: str) -> Counter:
    found = Counter()
    for path in (lake_root / prefix).glob("dt=*/*.jsonl"):
        for line in path.read_text(encoding="utf-8").splitlines():
            found[json.loads(line)[field]] += 1
    return found


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--home", type=Path, default=None)
    ap.add_argument("--requests", type=int, default=2000)
    ap.add_argument("--clients", type=int, default=16)
    ap.add_argument("--timeout", type=float, default=1800, help="stop sending after this many seconds")
    ap.add_argument("--base-model", default=None, help="base model of a new bench home (default: SmolLM2)")
    args = ap.parse_args()
    if args.base_model:
        os.environ["REPLYLOOP_BASE_MODEL"] = args.base_model
    home = args.home or Path(os.environ.get("REPLYLOOP_HOME", ROOT / ".replyloop")) / "bench-serve"
    home.mkdir(parents=True, exist_ok=True)
    setup = prepare_home(home)
    lake_root = Path(setup["settings"].lake)
    before_replies = lake_ids(lake_root, "raw/replies", "reply_id")
    before_events = lake_ids(lake_root, "raw/feedback", "event_id")
    convs = golden_conversations()
    import httpx

    server = Server(home)
    server.wait_ready()
    clients = [httpx.Client(base_url=server.url, headers={"X-API-Key": server.key}, timeout=120)
               for _ in range(args.clients)]
    deadline = time.monotonic() + args.timeout

    def one(k: int, i: int):
        if time.monotonic() > deadline:
            return None
        t = time.perf_counter()
        r = clients[k].post("/v1/replies", json={"messages": convs[i % len(convs)]})
        lat = time.perf_counter() - t
        if r.status_code != 200:
            return (lat, r.status_code, None, None, None)
        rid = r.json()["reply_id"]
        fb = {"reply_id": rid, "rating": "down" if i % 3 == 0 else "up"}
        if i % 5 == 0:
            fb["correction"] = "Sorry about that! Please DM us your order number and we'll sort it out."
        f = clients[k].post("/v1/feedback", json=fb)
        return (lat, r.status_code, rid, f.status_code, f.json().get("event_id") if f.status_code == 202 else None)

    print(f"load average before: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    started = time.perf_counter()
    results = [r for r in run_clients(args.clients, list(range(args.requests)), one) if r is not None]
    wall = time.perf_counter() - started
    for c in clients:
        c.close()
    exit_code = server.stop()
    replies = lake_ids(lake_root, "raw/replies", "reply_id") - before_replies
    events = lake_ids(lake_root, "raw/feedback", "event_id") - before_events
    sent = [r[2] for r in results if r[2]]
    accepted = [r[4] for r in results if r[4]]
    statuses = Counter(r[1] for r in results) + Counter(r[3] for r in results if r[3])
    lat = [r[0] for r in results]
    print(f"{len(results)} replies + {len(accepted)} feedback events in {wall:.1f}s at {args.clients} clients: "
          f"{len(results) / wall:.1f} replies/s; reply latency p50 {pct(lat, .5):.3f}s p95 {pct(lat, .95):.3f}s")
    print(f"statuses: {dict(sorted(statuses.items()))}; 5xx: {sum(v for k, v in statuses.items() if k >= 500)}")
    print(f"lost replies: {sum(1 for r in sent if replies[r] == 0)}; duplicated: {sum(1 for r in sent if replies[r] > 1)}; "
          f"lost feedback: {sum(1 for e in accepted if events[e] == 0)}; server exit code {exit_code}")
    print(f"load average after: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
