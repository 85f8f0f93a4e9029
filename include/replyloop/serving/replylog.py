"""Nothing lost: served replies and feedback events written durably to the lake, and a reply-id index.

One writer thread takes every record. It drains what is queued (group commit), appends the lines to
this process's file of the day (`raw/replies/dt=YYYY-MM-DD/serve-<instance>.jsonl`, flushed and fsynced;
on S3 one object per commit), records the reply ids in a SQLite index, and only then lets the waiting
requests answer. A reply the platform received is therefore on disk with its model version, and feedback
finds it by id however late, also after a restart. `close()` drains the queue (clean shutdown).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import queue
import sqlite3
import threading
import uuid
from collections import defaultdict
from concurrent.futures import Future
from pathlib import Path

from replyloop.contract import RAW_PREFIXES
from replyloop.lake import Lake, LocalLake

log = logging.getLogger(__name__)
_SCHEMA = """
CREATE TABLE IF NOT EXISTS replies (reply_id TEXT PRIMARY KEY, conversation_id TEXT NOT NULL,
  model_version TEXT NOT NULL, created_at TEXT NOT NULL, partition TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS webhook_deliveries (signature TEXT PRIMARY KEY, platform TEXT NOT NULL, ts INTEGER NOT NULL);
"""


class ReplyLogError(RuntimeError):
    """A record could not be made durable (the request is refused; nothing is returned as served)."""


class ReplyIndex:
    """reply_id -> (conversation_id, model_version, created_at); also remembers accepted webhook signatures."""

    def __init__(self, path: Path):
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(_SCHEMA)
        self._lock = threading.Lock()

    def add(self, rows: list[tuple[str, str, str, str, str]]) -> None:
        with self._lock:
            self._db.execute("BEGIN")
            self._db.executemany("INSERT OR REPLACE INTO replies VALUES (?, ?, ?, ?, ?)", rows)
            self._db.execute("COMMIT")

    def get(self, reply_id: str) -> dict | None:
        with self._lock:
            row = self._db.execute("SELECT conversation_id, model_version, created_at FROM replies WHERE reply_id = ?",
                                   (reply_id,)).fetchone()
        return None if row is None else {"conversation_id": row[0], "model_version": row[1], "created_at": row[2]}

    def first_delivery(self, platform: str, signature: str, ts: int, forget_before: int) -> bool:
        """True the first time a signature is seen; signatures older than the tolerance are forgotten."""
        with self._lock:
            self._db.execute("DELETE FROM webhook_deliveries WHERE ts < ?", (forget_before,))
            cur = self._db.execute("INSERT OR IGNORE INTO webhook_deliveries VALUES (?, ?, ?)",
                                   (signature, platform, ts))
            return cur.rowcount == 1

    def forget_delivery(self, signature: str) -> None:
        """A delivery that was not accepted after all (its event was refused): a retry is not a replay."""
        with self._lock:
            self._db.execute("DELETE FROM webhook_deliveries WHERE signature = ?", (signature,))

    def close(self) -> None:
        with self._lock:
            self._db.close()


class ReplyLog:
    """Durable, group-committed writer of served replies (raw/replies) and feedback (raw/feedback)."""

    def __init__(self, lake: Lake, index: ReplyIndex, instance: str | None = None):
        self.lake = lake
        self.index = index
        self.instance = instance or uuid.uuid4().hex[:12]
        self._queue: queue.Queue = queue.Queue()
        self._seq = 0
        self._files: dict[str, object] = {}
        self._thread = threading.Thread(target=self._run, name="reply-log", daemon=True)
        self._thread.start()

    def submit(self, kind: str, record: dict, day: str) -> Future:
        """kind 'replies' or 'feedback' into partition dt=<day>; the future resolves once the record is durable."""
        fut: Future = Future()
        self._queue.put((kind, record, day, fut))
        return fut

    async def write(self, kind: str, record: dict, day: str) -> None:
        await asyncio.wrap_future(self.submit(kind, record, day))

    def pending(self) -> int:
        return self._queue.qsize()

    def close(self) -> None:
        self._queue.put(None)
        self._thread.join()
        for fh in self._files.values():
            fh.close()
        self._files.clear()

    def _run(self) -> None:
        while True:
            batch = [self._queue.get()]
            while True:
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            stop = None in batch
            items = [b for b in batch if b is not None]
            if items:
                self._commit(items)
            if stop:
                return

    def _commit(self, items: list) -> None:
        groups: dict[str, list] = defaultdict(list)
        for kind, record, day, fut in items:
            groups[f"{RAW_PREFIXES[kind]}/dt={day}"].append((kind, record, fut))
        for partition, group in groups.items():
            try:
                self._append(partition, [json.dumps(r, ensure_ascii=False) + "\n" for _, r, _ in group])
                rows = [(r["reply_id"], r["conversation_id"], r["model_version"], r["messages"][-1]["created_at"],
                         partition) for kind, r, _ in group if kind == "replies"]
                if rows:
                    self.index.add(rows)
            except Exception as exc:  # the lake or the index failed: these requests are refused, not half-served
                log.error("could not store %d record(s) in %s: %s", len(group), partition, type(exc).__name__)
                for _, _, fut in group:
                    fut.set_exception(ReplyLogError(f"could not store the record ({type(exc).__name__})"))
                continue
            for _, _, fut in group:
                fut.set_result(None)

    def _append(self, partition: str, lines: list[str]) -> None:
        data = "".join(lines).encode()
        if isinstance(self.lake, LocalLake):
            fh = self._files.get(partition)
            if fh is None:
                for old in [p for p in self._files if p.split("/dt=")[0] == partition.split("/dt=")[0]]:
                    self._files.pop(old).close()  # a new day: the previous day's file is finished
                path = self.lake.root / partition / f"serve-{self.instance}.jsonl"
                path.parent.mkdir(parents=True, exist_ok=True)
                fh = self._files[partition] = open(path, "ab")
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        else:
            self._seq += 1
            self.lake.write_bytes(f"{partition}/serve-{self.instance}-{self._seq:08d}.jsonl", data)
