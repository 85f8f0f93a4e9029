"""Assets shipped with the package, and the loaders of the evaluation sets.

The golden and safety sets (JSON Lines, described in docs/gate.md) are read from the configured location
`REPLYLOOP_EVAL_SETS_URI`: a local folder, an `s3://bucket/prefix`, or `lake:<prefix>` inside the
configured lake. The default is the shipped `resources/eval/`. Each set is versioned by the sha256 of its
file, recorded with every gate decision. A malformed line stops with the file, line and field named.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

from pathlib import Path

from replyloop.settings import Settings

ROOT = Path(__file__).resolve().parent
METRICS = ROOT / "metrics"
EVAL = ROOT / "eval"
GATE_FILE = ROOT / "gate.yaml"

ROLES = ("customer", "agent")
CHANNELS = ("public_reply", "direct_message")
EXPECTED = ("refuse", "redirect_to_dm", "de_escalate", "stay_on_topic")
FILES = {"golden": "golden.jsonl", "safety": "safety.jsonl"}


class EvalSetError(ValueError):
    """An evaluation set cannot be read or breaks the schema; the message names the file and line."""


@dataclass(frozen=True)
class SetFile:
    name: str           # "golden" | "safety"
    source: str         # where it was read from (path or URL)
    sha256: str         # content hash of the file as read
    records: list[dict]



def json_lines(text: str, source, error: type[Exception]):
    """(line number, value) of each non-blank line of a JSON-lines text; a line that is not JSON raises `error`
    naming the source and the line."""
    for no, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            yield no, json.loads(line)
        except json.JSONDecodeError as exc:
            raise error(f"{source} line {no}: not valid JSON ({exc.msg})") from exc

def _location(settings: Settings):
    """(lake, prefix) holding the set files."""
    from replyloop.lake import lake_for, open_lake

    uri = settings.eval_sets_uri or str(EVAL)
    if uri.startswith("lake:"):
        return lake_for(settings), uri.removeprefix("lake:").strip("/")
    return open_lake(uri, endpoint_url=settings.aws_endpoint_url), ""


def _read(settings: Settings, name: str) -> tuple[str, bytes]:
    from replyloop.lake import LakeError

    lake, prefix = _location(settings)
    key = f"{prefix}/{FILES[name]}" if prefix else FILES[name]
    source = lake.url(key)
    try:
        return source, lake.read_bytes(key)
    except (OSError, LakeError) as exc:
        raise EvalSetError(f"{name} set {source} cannot be read ({exc}); set REPLYLOOP_EVAL_SETS_URI to the "
                           "folder or prefix that holds golden.jsonl and safety.jsonl") from exc


def _check_messages(rec: dict, where: str) -> None:
    msgs = rec.get("messages")
    if not isinstance(msgs, list) or not msgs:
        raise EvalSetError(f"{where}: 'messages' must be a non-empty list of {{'role', 'text'}}")
    for k, m in enumerate(msgs):
        if not isinstance(m, dict) or m.get("role") not in ROLES or not isinstance(m.get("text"), str) \
                or not m["text"].strip():
            raise EvalSetError(f"{where}: messages[{k}] needs role in {ROLES} and a non-empty text")
    if msgs[-1]["role"] != "customer":
        raise EvalSetError(f"{where}: the last message must be the customer's")


def _check(name: str, rec: dict, where: str) -> None:
    if not isinstance(rec, dict) or not isinstance(rec.get("id"), str) or not rec["id"]:
        raise EvalSetError(f"{where}: every record needs a string 'id'")
    where = f"{where} (id {rec['id']})"
    if rec.get("channel") not in CHANNELS:
        raise EvalSetError(f"{where}: 'channel' must be one of {CHANNELS}, not {rec.get('channel')!r}")
    _check_messages(rec, where)
    if name == "golden":
        for field in ("intent", "reference"):
            if not isinstance(rec.get(field), str) or not rec[field].strip():
                raise EvalSetError(f"{where}: '{field}' must be a non-empty string")
    elif rec.get("expected") not in EXPECTED or not isinstance(rec.get("category"), str):
        raise EvalSetError(f"{where}: needs a string 'category' and 'expected' in {EXPECTED}")


def load_set_file(settings: Settings, name: str) -> SetFile:
    """One evaluation set file, checked line by line against the schema in docs/gate.md."""
    if name not in FILES:
        raise EvalSetError(f"unknown evaluation set {name!r}; expected one of {sorted(FILES)}")
    source, data = _read(settings, name)
    records, seen = [], set()
    for no, rec in json_lines(data.decode("utf-8", errors="strict"), source, EvalSetError):
        _check(name, rec, f"{source} line {no}")
        if rec["id"] in seen:
            raise EvalSetError(f"{source} line {no}: duplicate id {rec['id']!r}")
        seen.add(rec["id"])
        records.append(rec)
    if not records:
        raise EvalSetError(f"{name} set {source} is empty: an evaluation set needs at least one record")
    return SetFile(name, source, hashlib.sha256(data).hexdigest(), records)


def golden_set(settings: Settings | None = None) -> SetFile:
    return load_set_file(_settings(settings), "golden")


def safety_set(settings: Settings | None = None) -> SetFile:
    return load_set_file(_settings(settings), "safety")


def _settings(settings: Settings | None) -> Settings:
    from replyloop.settings import get_settings

    return settings or get_settings()


def protected_prompts(settings: Settings | None = None) -> list[str]:
    """Customer texts of the golden and safety sets, which must never reach training data (contamination
    guard). Messages of fewer than four words ("thanks!") are left out: they would match everything."""
    settings = _settings(settings)
    texts = [m["text"] for name in FILES for rec in load_set_file(settings, name).records
             for m in rec["messages"] if m["role"] == "customer"]
    return [t for t in texts if len(t.split()) >= 4]
