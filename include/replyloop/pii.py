"""TEMP stand-in (INTERFACES §3) until the `pii` branch lands: check_reply = find_leaks."""

from __future__ import annotations

from replyloop.ingest.pii import PiiSpan, find_leaks  # noqa: F401


def check_reply(reply: str, *, prompt: str | list[str] | None = None) -> list[PiiSpan]:
    return find_leaks(reply)
