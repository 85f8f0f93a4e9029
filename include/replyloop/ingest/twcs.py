"""Rebuild conversations from a TWCS export ("Customer Support on Twitter" layout).

Each tweet names the tweet it answers (`in_response_to_tweet_id`). A thread is a root tweet (one that
answers nothing) and everything below it; it becomes one canonical conversation `twcs-<root id>`.
Tweets whose parent is missing, and tweets caught in a reply cycle, cannot be placed: their sub-thread is
rejected as `broken_thread` (one rejection per orphan sub-thread, nothing dropped silently).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Iterator
from datetime import datetime

from replyloop.ingest.readers import RawRecord, Rejection


def _first_id(value: str) -> str:
    # in_response_to_tweet_id is a single id, but exports sometimes write floats ("119237.0")
    value = (value or "").strip()
    return value[:-2] if value.endswith(".0") else value


def _message(row: RawRecord) -> dict:
    inbound = str(row.data["inbound"]).strip().lower() in ("true", "1", "yes")
    return {
        "message_id": _first_id(row.data["tweet_id"]),
        "role": "customer" if inbound else "agent",
        "author_id": row.data["author_id"],
        "text": row.data["text"],
        "created_at": row.data["created_at"],
    }


def _when(row: RawRecord) -> tuple:
    """Sort key: tweet time, then id; rows with an unparseable time sort last (normalisation rejects them)."""
    try:
        ts = datetime.strptime(row.data["created_at"].strip(), "%a %b %d %H:%M:%S %z %Y").timestamp()
    except (ValueError, AttributeError):
        ts = float("inf")
    tid = _first_id(row.data["tweet_id"])
    return ts, len(tid), tid


def _subtree(root: str, children: dict[str, list[str]]) -> list[str]:
    seen, stack = [], [root]
    visited = set()
    while stack:
        node = stack.pop()
        if node in visited:
            continue
        visited.add(node)
        seen.append(node)
        stack.extend(children.get(node, ()))
    return seen


def build_threads(rows: Iterable[RawRecord], *, platform: str = "twitter") -> Iterator[RawRecord | Rejection]:
    """Group tweet rows into conversation records; yields RawRecords of canonical conversations."""
    by_id: dict[str, RawRecord] = {}
    for row in rows:
        by_id[_first_id(row.data["tweet_id"])] = row
    children: dict[str, list[str]] = defaultdict(list)
    roots, orphans = [], []
    for tid, row in by_id.items():
        parent = _first_id(row.data.get("in_response_to_tweet_id", ""))
        if not parent:
            roots.append(tid)
        elif parent in by_id:
            children[parent].append(tid)
        else:
            orphans.append((tid, parent))

    placed: set[str] = set()
    for root in sorted(roots, key=lambda t: (by_id[t].source, by_id[t].line)):
        ids = _subtree(root, children)
        placed.update(ids)
        rows_ = sorted((by_id[i] for i in ids), key=_when)
        first = by_id[root]
        yield RawRecord(
            {"conversation_id": f"twcs-{root}", "platform": platform,
             "channel": "public_reply", "created_at": first.data["created_at"],
             "messages": [_message(r) for r in rows_]},
            first.source, first.line,
        )
    for tid, parent in orphans:
        ids = _subtree(tid, children)
        placed.update(ids)
        row = by_id[tid]
        yield Rejection("broken_thread", f"{row.source}:{row.line}: tweet {tid} replies to missing tweet {parent} "
                        f"({len(ids)} tweet(s) in its sub-thread)", row.source, row.line,
                        [by_id[i].data for i in ids])
    cyclic = [t for t in by_id if t not in placed]
    while cyclic:  # every remaining tweet sits on or under a reply cycle
        tid = cyclic[0]
        ids = _subtree(tid, children)
        row = by_id[tid]
        yield Rejection("broken_thread", f"{row.source}:{row.line}: tweet {tid} is part of a reply cycle "
                        f"({len(ids)} tweet(s))", row.source, row.line, [by_id[i].data for i in ids])
        done = set(ids)
        cyclic = [t for t in cyclic if t not in done]
