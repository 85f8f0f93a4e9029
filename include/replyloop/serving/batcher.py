"""Micro-batching: requests that arrive together share one engine call.

A worker thread takes the first waiting request and collects more while they keep coming: each within
`wait_ms` of the previous one, for at most `max_wait_ms` after the first and `max_batch` requests (a lone
client waits only `wait_ms`). Requests that arrived while the engine was busy are all in the queue and
join the next batch at once.

The clients of the last cycle are expected back: the requests of the last batch plus those that arrived
while it was generating (they came from other clients). As long as the batch holds fewer than that, the
worker waits up to `max_wait_ms` after the first, even when they come more than `wait_ms` apart. Without
that, a round of clients that once split into two batches (some came back a few milliseconds after the
others: reply stored, feedback sent) stayed split: each half came back while the other was generating, and
every round paid two engine calls.

It runs the requests through the engine of the model each request was admitted with, so requests admitted
before a champion swap finish on the old model. Results go back to the asyncio callers as futures.
"""

from __future__ import annotations

import asyncio
import functools
import queue
import threading
import time
from collections import defaultdict, deque
from concurrent.futures import Future


class QueueFull(RuntimeError):
    pass


def collect_deadline(first_at: float, last_at: float, wait: float, max_wait: float, *,
                     expecting_more: bool = False) -> float:
    """Until when to wait for the next request: `wait` after the latest arrival, never past `max_wait`
    (or `wait`, if larger) after the first; the whole `max_wait` while more requests are expected back."""
    cap = first_at + max(wait, max_wait)
    return cap if expecting_more else min(last_at + wait, cap)


class MicroBatcher:
    def __init__(self, *, max_batch: int, wait_ms: float, max_queue: int, guard, on_batch=None,
                 max_wait_ms: float = 0.0, await_returning: bool = True):
        self.max_batch = max_batch
        self.wait = wait_ms / 1000.0
        self.max_wait = max_wait_ms / 1000.0
        self.max_queue = max_queue
        self.await_returning = await_returning
        self.guard = guard  # (texts, customer texts per conversation) -> [(text to send, fallback reason)]
        self.on_batch = on_batch  # callback(engine_name, size, seconds) for metrics
        self.expected = 0  # requests of the last cycle: its batch plus those that arrived while it generated
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
        started = last = time.monotonic()
        expected = min(self.max_batch, self.expected) if self.await_returning else 0
        while len(batch) < self.max_batch:
            deadline = collect_deadline(started, last, self.wait, self.max_wait, expecting_more=len(batch) < expected)
            try:
                item = self._queue.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                break
            if item is None:
                self._queue.put(None)
                break
            batch.append(item)
            last = time.monotonic()
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
            settle = [done for items in by_model.values() for done in self._generate(items)]
            self.expected = len(batch) + self._queue.qsize()  # measured before any of them is answered
            for done in settle:
                done()
            self._busy = 0

    def _generate(self, items: list) -> list:
        """Generate and check a batch of one model; returns how to answer each request."""
        engine = items[0][0].engine
        started = time.monotonic()
        try:
            outs = engine.generate([conv for _, conv, _ in items])
            checked = self.guard([o.text for o in outs],
                                 [[t["text"] for t in conv if t["role"] == "customer"] for _, conv, _ in items])
        except Exception as exc:
            return [functools.partial(fut.set_exception, exc) for _, _, fut in items]
        if self.on_batch:
            self.on_batch(engine.name, len(items), time.monotonic() - started)
        return [functools.partial(fut.set_result, (out, text, reason))
                for (_, _, fut), out, (text, reason) in zip(items, outs, checked, strict=True)]
