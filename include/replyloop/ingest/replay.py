"""Replay quarantined records into the landing zone after a fix.

Two kinds of fix:
  - the code was fixed (a new role alias, a looser parser): re-ingest the day (`replyloop ingest --date D`);
    the raw files are read again and what now passes is curated. No replay needed.
  - the records were fixed by hand in the quarantine file (its `raw` field): `replay` writes those records
    as a new landing file `raw/<kind>/dt=D/replay-<hash>.<ext>` and the day is re-ingested. The original
    bad lines stay where they were, so they are quarantined again: nothing is rewritten in place.
Records naming a subject of an erasure request are never replayed (ingestion would drop them anyway).
"""

from __future__ import annotations

import csv
import hashlib
import io
import json

from replyloop.contract import QUARANTINE_PREFIX, RAW_PREFIXES
from replyloop.ingest.readers import TWCS_COLUMNS
from replyloop.lake import Lake
from replyloop.privacy.erasure import ErasureSet


def replay_quarantine(lake: Lake, day: str, kind: str, *, reasons: set[str] | None = None) -> dict:
    """Write the (possibly hand-edited) raw records of a day's quarantine back to the landing zone."""
    if kind not in RAW_PREFIXES:
        raise ValueError(f"kind={kind!r} is not one of {', '.join(RAW_PREFIXES)}")
    source = f"{QUARANTINE_PREFIX}/dt={day}/{kind}.jsonl"
    if not lake.exists(source):
        raise FileNotFoundError(f"no quarantine for {kind} on {day}: {lake.url(source)} does not exist")
    lines = [json.loads(line) for line in lake.read_bytes(source).decode().splitlines() if line.strip()]
    erasure = ErasureSet.load(lake)
    erased = [q for q in lines if erasure.names(q.get("raw"))]
    chosen = [q for q in lines if q.get("raw") is not None and (not reasons or q["reason"] in reasons)
              and not erasure.names(q["raw"])]
    if not chosen:
        return {"replayed": 0, "skipped": len(lines), "erased": len(erased), "written": None}
    if kind == "twcs":
        body = _twcs_csv(chosen)
        ext = "csv"
    else:
        body = "".join((q["raw"] if isinstance(q["raw"], str) else json.dumps(q["raw"], ensure_ascii=False)) + "\n"
                       for q in chosen).encode()
        ext = "jsonl"
    key = f"{RAW_PREFIXES[kind]}/dt={day}/replay-{hashlib.sha256(body).hexdigest()[:12]}.{ext}"
    lake.write_bytes(key, body)
    return {"replayed": len(chosen), "skipped": len(lines) - len(chosen), "erased": len(erased),
            "written": lake.url(key)}


def _twcs_csv(chosen: list[dict]) -> bytes:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=TWCS_COLUMNS, extrasaction="ignore")
    writer.writeheader()
    for q in chosen:
        rows = q["raw"] if isinstance(q["raw"], list) else [q["raw"]]
        for row in rows:
            if isinstance(row, dict):
                writer.writerow(row)
            else:  # an unparseable CSV line as it was read
                out.write(str(row) + "\r\n")
    return out.getvalue().encode()
