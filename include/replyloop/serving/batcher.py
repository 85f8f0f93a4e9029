"""Micro-batching: requests that arrive together share one engine call.

A worker thread takes the first waiting request and collects more while they keep coming: each within
`wait_ms` of the previous one, for at most `max_wait_ms` after the first and `max_batch` requests (clients
that were answered together come back a few milliseconds apart and stay in one batch; a lone client waits
only `wait_ms`). It runs them through the engine of the model each request was admitted with, so requests admitted
before a champion swap finish on the old model. Results go back to the asyncio callers as futures.
"""

from __future__ import annotations

import asyncio
import queue
import threading
import time
from collections import defaultdict
from concurrent.futures import Future


class QueueFull(RuntimeError):
    pass


def collect_deadline(first_at: float, last_at: float, wait: float, max_wait: float) -> float:
    """Until when to wait for the next request: `wait` after the latest arrival, never past `max_wait`
    (or `wait`, if larger) after the first."""
    return min(last_at + wait, first_at + max(wait, max_wait))


class MicroBatcher:
    def __init__(self, *, max_batch: int, wait_ms: float, max_queue: int, guard, on_batch=None,
                 max_wait_ms: float = 0.0):
        self.max_batch = max_batch
        self.wait = wait_ms / 1000.0
        self.max_wait = max_wait_ms / 1000.0
        self.max_queue = max_queue
        self.guard = guard  # (texts, customer texts per conversation) -> [(text to send, fallback reason)]
        self.on_batch = on_batch  # callback(engine_name, size, seconds) for metrics
        self._queue: queue.Queue = queue.Queue()
        self._busy = 0
        self._thread = threading.Thread(target=self._run, name="micro-batcher", daemon=True)
        self._thread.start()

    def depth(self) -> int:
        """Requests waiting or being generated."""
        return self._queue.qsize() + self._busy

    async def generate(self, loaded, conversation: list[dict]):
        """(Generation, text to send, fallback reason or None), generated on `loaded`."""
        if self._queue.qsize() >= self.max_queue:
            raise QueueFull(f"more than {self.max_queue} requests are waiting for the model")
        fut: Future = Future()
        self._queue.put((loaded, conversation, fut))
        return await asyncio.wrap_future(fut)

    def close(self) -> None:
        self._queue.put(None)
        self._thread.join()

    def _collect(self, first) -> list:
        batch = [first]
        started = time.monotonic()
        deadline = collect_deadline(started, started, self.wait, self.max_wait)
        while len(batch) < self.max_batch:
            try:
                item = self._queue.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                break
            if item is None:
                self._queue.put(None)
                break
            batch.append(item)
            deadline = collect_deadline(started, time.monotonic(), self.wait, self.max_wait)
        return batch

    def _run(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                return
            batch = self._collect(first)
            self._busy = len(batch)
            by_model = defaultdict(list)
            for item in batch:
                by_model[id(item[0])].append(item)
            for items in by_model.values():
                self._generate(items)
            self._busy = 0

    def _generate(self, items: list) -> None:
        engine = items[0][0].engine
        started = time.monotonic()
        try:
            outs = engine.generate([conv for _, conv, _ in items])
            checked = self.guard([o.text for o in outs],
                                 [[t["text"] for t in conv if t["role"] == "customer"] for _, conv, _ in items])
        except Exception as exc:
            for _, _, fut in items:
                fut.set_exception(exc)
            return
        if self.on_batch:
            self.on_batch(engine.name, len(items), time.monotonic() - started)
        for (_, _, fut), out, (text, reason) in zip(items, outs, checked, strict=True):
            fut.set_result((out, text, reason))
