"""The micro-batcher gathers the clients of a round into one engine call (issue 11, point 3).

The engine is a stand-in that records batch sizes (the batcher's input is any `Engine`); the batcher and its
timing rules are the real ones. Waits are bounded by the settings given here, not by machine speed.
"""

from __future__ import annotations

import asyncio
import time
from types import SimpleNamespace

from replyloop.serving.batcher import MicroBatcher
from replyloop.serving.engine import Generation


class RecordingEngine:
    name, device = "recording", "cpu"

    def __init__(self, seconds: float):
        self.seconds = seconds
        self.sizes: list[int] = []

    def generate(self, conversations):
        self.sizes.append(len(conversations))
        time.sleep(self.seconds)
        return [Generation("ok", 1) for _ in conversations]


def _batcher(max_wait_ms: float) -> MicroBatcher:
    return MicroBatcher(max_batch=16, wait_ms=4, max_wait_ms=max_wait_ms, max_queue=64,
                        guard=lambda texts, prompts: [(t, None) for t in texts])


async def _clients(batcher, loaded, back_after: list[float], rounds: int) -> None:
    async def client(delay: float):
        for _ in range(rounds):
            await batcher.generate(loaded, [{"role": "customer", "text": "hi"}])
            await asyncio.sleep(delay)  # storing the reply, sending feedback: some clients come back later

    await asyncio.gather(*(client(d) for d in back_after))


def test_clients_that_come_back_apart_stay_in_one_batch():
    engine = RecordingEngine(seconds=0.05)
    batcher = _batcher(max_wait_ms=2000)
    try:  # half the clients come back 30 ms after the others: more than the 4 ms gap, less than the cap
        asyncio.run(_clients(batcher, SimpleNamespace(engine=engine), [0.0] * 4 + [0.03] * 4, rounds=4))
    finally:
        batcher.close()
    # The first round may split when the machine delays a put by more than the 4 ms gap; from then on the
    # batcher expects the clients of its last cycle, so every later round is one batch of all eight.
    assert sum(engine.sizes) == 32
    assert engine.sizes[-3:] == [8, 8, 8]


def test_a_lone_client_does_not_wait_for_the_cap():
    engine = RecordingEngine(seconds=0.0)
    batcher = _batcher(max_wait_ms=3000)
    started = time.monotonic()
    try:
        asyncio.run(_clients(batcher, SimpleNamespace(engine=engine), [0.0], rounds=3))
    finally:
        batcher.close()
    assert engine.sizes == [1, 1, 1]
    # Waiting for the 3 s cap would take at least 9 s for three rounds: the bound is the setting, not speed.
    assert time.monotonic() - started < 3.0
