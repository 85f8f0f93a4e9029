"""Load test on loopback: N requests at C concurrent clients, each reply rated (every 5th corrected).

    python bench/load.py [--home DIR] [--requests 2000] [--clients 16] [--timeout 1800] [--base-model DIR]
                         [--baseline-env SETTING=VALUE ...]

Serves the bench home's champion (see bench/serve.py) with `replyloop serve` in a subprocess, sends the
golden conversations round-robin, stops the server with SIGTERM (graceful shutdown flushes the reply
log), then reads the lake: every reply id the clients received must be in raw/replies exactly once and
every accepted feedback event in raw/feedback. Bounded in count (--requests) and time (--timeout).
Prints throughput, latency, engine calls (requests per micro-batch), status counts, and lost or duplicated
records (all must be zero). With --baseline-env, the same load first runs on a server with those settings
(e.g. REPLYLOOP_SERVE_BATCH_AWAIT_RETURNING=false), side by side, and the ratios are printed.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from collections import Counter
from pathlib import Path

from _serving import ROOT, Server, batch_stats, golden_conversations, pct, prepare_home, run_clients


def lake_ids(lake_root: Path, prefix: str, field: str) -> Counter:
    found = Counter()
    for path in (lake_root / prefix).glob("dt=*/*.jsonl"):
        for line in path.read_text(encoding="utf-8").splitlines():
            found[json.loads(line)[field]] += 1
    return found


def run_load(home: Path, lake_root: Path, requests: int, n_clients: int, timeout: float, env: dict) -> dict:
    """One server, one load: figures and the lake check."""
    import httpx

    before_replies = lake_ids(lake_root, "raw/replies", "reply_id")
    before_events = lake_ids(lake_root, "raw/feedback", "event_id")
    convs = golden_conversations()
    server = Server(home, **env)
    server.wait_ready()
    clients = [httpx.Client(base_url=server.url, headers={"X-API-Key": server.key}, timeout=120)
               for _ in range(n_clients)]
    deadline = time.monotonic() + timeout

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

    load_before = os.getloadavg()[0]
    started = time.perf_counter()
    results = [r for r in run_clients(n_clients, list(range(requests)), one) if r is not None]
    wall = time.perf_counter() - started
    for c in clients:
        c.close()
    calls, batched = batch_stats(server.url)
    exit_code = server.stop()
    replies = lake_ids(lake_root, "raw/replies", "reply_id") - before_replies
    events = lake_ids(lake_root, "raw/feedback", "event_id") - before_events
    sent = [r[2] for r in results if r[2]]
    accepted = [r[4] for r in results if r[4]]
    statuses = Counter(r[1] for r in results) + Counter(r[3] for r in results if r[3])
    return {"n": len(results), "events": len(accepted), "wall": wall, "lat": [r[0] for r in results],
            "calls": calls, "batched": batched, "statuses": dict(sorted(statuses.items())),
            "5xx": sum(v for k, v in statuses.items() if k >= 500), "exit": exit_code,
            "lost": sum(1 for r in sent if replies[r] == 0), "dup": sum(1 for r in sent if replies[r] > 1),
            "lost_fb": sum(1 for e in accepted if events[e] == 0), "load": (load_before, os.getloadavg()[0])}


def report(name: str, r: dict, n_clients: int) -> None:
    print(f"{name}: {r['n']} replies + {r['events']} feedback events in {r['wall']:.1f}s at {n_clients} clients: "
          f"{r['n'] / r['wall']:.2f} replies/s; reply latency p50 {pct(r['lat'], .5):.3f}s "
          f"p95 {pct(r['lat'], .95):.3f}s (load average {r['load'][0]:.1f} -> {r['load'][1]:.1f})")
    print(f"  engine calls: {r['calls']:.0f}, {r['batched'] / max(r['calls'], 1):.1f} requests per call; "
          f"statuses: {r['statuses']}; 5xx: {r['5xx']}")
    print(f"  lost replies: {r['lost']}; duplicated: {r['dup']}; lost feedback: {r['lost_fb']}; "
          f"server exit code {r['exit']} (-15: uvicorn re-raises SIGTERM after its graceful shutdown)", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--home", type=Path, default=None)
    ap.add_argument("--requests", type=int, default=2000)
    ap.add_argument("--clients", type=int, default=16)
    ap.add_argument("--timeout", type=float, default=1800, help="stop sending after this many seconds (per server)")
    ap.add_argument("--base-model", default=None, help="base model of a new bench home (default: SmolLM2)")
    ap.add_argument("--baseline-env", nargs="*", default=None, metavar="SETTING=VALUE",
                    help="first run the same load on a server with these settings, side by side")
    args = ap.parse_args()
    if args.base_model:
        os.environ["REPLYLOOP_BASE_MODEL"] = args.base_model
    home = args.home or Path(os.environ.get("REPLYLOOP_HOME", ROOT / ".replyloop")) / "bench-serve"
    home.mkdir(parents=True, exist_ok=True)
    setup = prepare_home(home)
    lake_root = Path(setup["settings"].lake)
    print(f"load average before: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    runs = {}
    if args.baseline_env:
        env = dict(kv.split("=", 1) for kv in args.baseline_env)
        runs["baseline (" + " ".join(args.baseline_env) + ")"] = run_load(home, lake_root, args.requests,
                                                                        args.clients, args.timeout, env)
        report(*next(iter(runs.items())), args.clients)
    runs["replyloop"] = run_load(home, lake_root, args.requests, args.clients, args.timeout, {})
    report("replyloop", runs["replyloop"], args.clients)
    if args.baseline_env:
        b, f = (runs[k] for k in runs)
        print(f"replyloop / baseline: replies/s {f['n'] / f['wall'] / (b['n'] / b['wall']):.2f}x, "
              f"p50 {pct(f['lat'], .5) / pct(b['lat'], .5):.2f}x, p95 {pct(f['lat'], .95) / pct(b['lat'], .95):.2f}x")
    print(f"load average after: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
