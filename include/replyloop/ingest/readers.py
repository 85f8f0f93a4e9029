"""Streaming readers for the landing formats.

Each reader yields `RawRecord`s (parsed, not yet checked) and `Rejection`s (a line or row that could not
be parsed, with its location). Files are read as streams: gzip is decompressed on the fly, lines are
decoded one by one, so memory does not grow with the file size and a bad line costs one line.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from replyloop.lake import Lake

TWCS_COLUMNS = ("tweet_id", "author_id", "inbound", "created_at", "text", "response_tweet_id", "in_response_to_tweet_id")
RAW_PREVIEW_CHARS = 20_000  # the quarantine keeps the raw record, clipped so a 1 GB line cannot blow it up


class IngestError(RuntimeError):
    """The run cannot go on; the message names the file, partition or setting. Nothing was replaced."""


@dataclass
class RawRecord:
    data: dict[str, Any]
    source: str
    line: int


@dataclass
class Rejection:
    reason: str
    message: str
    source: str
    line: int | None
    raw: Any = None
    extra: dict[str, Any] = field(default_factory=dict)

    def quarantine_line(self, partition: str, unit: str) -> dict[str, Any]:
        """The line written to the quarantine file of `partition`; `unit` is conversation or feedback."""
        return {**self.to_json(), "partition": partition, "unit": unit}

    def to_json(self) -> dict[str, Any]:
        raw = self.raw
        if isinstance(raw, str) and len(raw) > RAW_PREVIEW_CHARS:
            raw = raw[:RAW_PREVIEW_CHARS] + f"... [clipped, {len(self.raw)} chars]"
        return {"reason": self.reason, "message": self.message, "source": self.source, "line": self.line,
                "raw": raw, **self.extra}


def _binary_stream(lake: Lake, key: str):
    stream = lake.open(key)
    if key.endswith(".gz"):
        return stream, gzip.GzipFile(fileobj=stream, mode="rb")
    return stream, stream


def _iter_lines(lake: Lake, key: str) -> Iterator[tuple[int, bytes] | Rejection]:
    """Yield (line_no, bytes) for every non-blank line, or a Rejection when the file breaks off."""
    raw, stream = _binary_stream(lake, key)
    line_no = 0
    try:
        for line_no, line in enumerate(stream, start=1):
            if line.strip():
                yield line_no, line
    except (EOFError, OSError, zlib.error, gzip.BadGzipFile) as exc:
        yield Rejection("unreadable_file", f"{key}: cannot read past line {line_no}: {exc}", key, line_no + 1)
    finally:
        raw.close()


def read_jsonl(lake: Lake, key: str) -> Iterator[RawRecord | Rejection]:
    """Canonical conversations or feedback events, one JSON object per line."""
    for item in _iter_lines(lake, key):
        if isinstance(item, Rejection):
            yield item
            continue
        line_no, data = item
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            yield Rejection("invalid_utf8", f"{key}:{line_no}: invalid UTF-8 at byte {exc.start}", key, line_no,
                            data.decode("utf-8", "backslashreplace"))
            continue
        try:
            obj = json.loads(text)
        except json.JSONDecodeError as exc:
            yield Rejection("malformed_json", f"{key}:{line_no}: {exc.msg} at column {exc.colno}", key, line_no,
                            text.rstrip("\n"))
            continue
        if not isinstance(obj, dict):
            yield Rejection("malformed_json", f"{key}:{line_no}: expected a JSON object, got {type(obj).__name__}",
                            key, line_no, text.rstrip("\n"))
            continue
        yield RawRecord(obj, key, line_no)


def csv_header(lake: Lake, key: str) -> list[str] | None:
    """The header row of a (possibly gzipped) CSV file, read from the first line only; None if empty."""
    raw, stream = _binary_stream(lake, key)
    try:
        first = stream.readline(1 << 16)
    except (EOFError, OSError, zlib.error):
        return None
    finally:
        raw.close()
    if not first.strip():
        return None
    return next(csv.reader([first.decode("utf-8", "replace")]), None)


def read_twcs_csv(lake: Lake, key: str) -> Iterator[RawRecord | Rejection]:
    """Rows of a TWCS export ("Customer Support on Twitter" layout); one RawRecord per tweet."""
    raw, stream = _binary_stream(lake, key)
    try:
        text = io.TextIOWrapper(stream, encoding="utf-8", errors="surrogateescape", newline="")
        reader = csv.reader(text, strict=True)
        try:
            header = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            yield Rejection("malformed_csv", f"{key}:1: unreadable header: {exc}", key, 1)
            return
        missing = [c for c in TWCS_COLUMNS if c not in header]
        index = {name: i for i, name in enumerate(header)}
        row_no = 1
        while True:
            try:
                row = next(reader)
            except StopIteration:
                break
            except csv.Error as exc:
                row_no = reader.line_num
                yield Rejection("malformed_csv", f"{key}:{row_no}: broken CSV quoting: {exc}", key, row_no)
                continue
            except (EOFError, OSError, zlib.error) as exc:
                yield Rejection("unreadable_file", f"{key}: cannot read past line {reader.line_num}: {exc}", key,
                                reader.line_num)
                break
            row_no = reader.line_num
            joined = ",".join(row)
            if missing:
                yield Rejection("malformed_csv", f"{key}:{row_no}: header lacks column(s) {', '.join(missing)}",
                                key, row_no, joined.encode("utf-8", "surrogateescape").decode("utf-8", "replace"))
                continue
            if len(row) != len(header):
                yield Rejection("malformed_csv", f"{key}:{row_no}: {len(row)} fields, header has {len(header)}",
                                key, row_no, joined.encode("utf-8", "surrogateescape").decode("utf-8", "replace"))
                continue
            if any("\udc80" <= ch <= "\udcff" for ch in joined):
                yield Rejection("invalid_utf8", f"{key}:{row_no}: invalid UTF-8 in row", key, row_no,
                                joined.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace"))
                continue
            yield RawRecord({name: row[i] for name, i in index.items()}, key, row_no)
    finally:
        raw.close()
