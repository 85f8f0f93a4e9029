"""A small load test on loopback: concurrent replies with feedback, a clean shutdown, nothing lost."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import uvicorn

from replyloop.serving.main import create_app

REQUESTS, CLIENTS = 160, 16


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ids(root: Path, prefix: str, field: str) -> Counter:
    return Counter(json.loads(line)[field] for p in (root / prefix).glob("dt=*/*.jsonl")
                   for line in p.read_text().splitlines())


def test_concurrent_replies_and_feedback_are_all_stored(serve_settings, api_key):
    settings = serve_settings.model_copy(update={"serve_rate_burst": 10_000, "serve_rate_per_minute": 1e6})
    root = Path(settings.lake)
    before = _ids(root, "raw/replies", "reply_id")
    port = _port()
    server = uvicorn.Server(uvicorn.Config(create_app(settings), host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(url + "/readyz").status_code == 200:
                break
        except httpx.HTTPError:
            pass
        time.sleep(0.1)

    def one(i: int):
        with httpx.Client(base_url=url, headers={"X-API-Key": api_key}, timeout=60) as c:
            r = c.post("/v1/replies", json={"text": f"order {i} has not arrived"})
            if r.status_code != 200:
                return r.status_code, None, None
            rid = r.json()["reply_id"]
            f = c.post("/v1/feedback", json={"reply_id": rid, "rating": "up" if i % 2 else "down",
                                             **({"correction": "Sorry! Please DM us."} if i % 4 == 0 else {})})
            return f.status_code, rid, f.json().get("event_id")

    try:
        with ThreadPoolExecutor(CLIENTS) as pool:
            results = list(pool.map(one, range(REQUESTS)))
    finally:
        server.should_exit = True
        thread.join(timeout=60)
    assert [r[0] for r in results] == [202] * REQUESTS
    replies = _ids(root, "raw/replies", "reply_id") - before
    events = _ids(root, "raw/feedback", "event_id")
    assert all(replies[rid] == 1 for _, rid, _ in results) and len(replies) == REQUESTS
    assert all(events[eid] == 1 for _, _, eid in results)
