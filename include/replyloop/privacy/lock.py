"""The lake lock: an ingestion run, an erasure request, a purge and a cleanup never interleave.

One object, `contract.LAKE_LOCK_KEY`, created only if absent (`Lake.write_new`: O_EXCL on a local folder,
a conditional PUT on S3). Its body says who holds it and until when; a lock past its expiry
(`Settings.lake_lock_ttl_seconds`, a holder that crashed) is taken over. A caller that finds the lock held
waits (`Settings.lake_lock_wait_seconds`), then fails with `LakeBusy` naming the holder, having done nothing.
"""

from __future__ import annotations

import json
import os
import socket
import time
import uuid
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta

from replyloop.contract import LAKE_LOCK_KEY
from replyloop.lake import Lake

POLL_SECONDS = 0.2


class LakeBusy(RuntimeError):
    """Another run holds the lake lock; the message names it. Nothing was done."""


def _stamp(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def holder(lake: Lake) -> dict | None:
    """The current holder of the lock (its body), or None when the lake is free."""
    if not lake.exists(LAKE_LOCK_KEY):
        return None
    try:
        return json.loads(lake.read_bytes(LAKE_LOCK_KEY))
    except (ValueError, OSError):
        return {"owner": "unknown", "expires_at": "0000"}  # unreadable: treat as stale


@contextmanager
def lake_lock(lake: Lake, owner: str, *, wait_seconds: float, ttl_seconds: float):
    """Hold the lake lock for the block; wait up to `wait_seconds` for it, else raise LakeBusy."""
    token = uuid.uuid4().hex
    deadline = time.monotonic() + wait_seconds
    while True:
        now = datetime.now(UTC)
        body = {"owner": owner, "token": token, "host": socket.gethostname(), "pid": os.getpid(),
                "acquired_at": _stamp(now), "expires_at": _stamp(now + timedelta(seconds=ttl_seconds))}
        if lake.write_new(LAKE_LOCK_KEY, json.dumps(body).encode()):
            break
        current = holder(lake)
        if current is not None and current.get("expires_at", "") < _stamp(now):
            lake.delete(LAKE_LOCK_KEY)  # stale: its holder died; the next write_new decides who gets it
            continue
        if time.monotonic() >= deadline:
            who = current or {}
            raise LakeBusy(f"{lake.url(LAKE_LOCK_KEY)} is held by {who.get('owner')!r} (host {who.get('host')}, "
                           f"pid {who.get('pid')}) since {who.get('acquired_at')}, until {who.get('expires_at')} "
                           f"at the latest; {owner} waited {wait_seconds:.0f}s and did nothing. Try again when it "
                           f"has finished.")
        time.sleep(POLL_SECONDS)
    try:
        yield body
    finally:
        current = holder(lake)
        if current is not None and current.get("token") == token:
            lake.delete(LAKE_LOCK_KEY)


def settings_lock(lake: Lake, settings, owner: str):
    """`lake_lock` with the wait and expiry of the settings."""
    return lake_lock(lake, owner, wait_seconds=settings.lake_lock_wait_seconds,
                     ttl_seconds=settings.lake_lock_ttl_seconds)
