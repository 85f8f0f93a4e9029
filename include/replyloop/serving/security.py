"""API keys (stored hashed) and webhook signatures (HMAC-SHA256 over timestamp and body).

Keys are random 256-bit tokens, so one SHA-256 is a sound hash for them (no password stretching needed);
only the hash is stored, in `$REPLYLOOP_HOME/secrets/api_keys.json` (written by `replyloop api-key create`)
or in `REPLYLOOP_API_KEY_HASHES="name:sha256hex,..."`. Comparisons are constant-time.

A webhook delivery carries `X-Replyloop-Timestamp` (unix seconds) and
`X-Replyloop-Signature: v1=<hex HMAC-SHA256(secret, "<timestamp>.<raw body>")>`; it is refused when the
signature is wrong, the timestamp is further than the tolerance from now, or the same signature was
already accepted (replay; the reply index remembers accepted signatures for the tolerance window).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from replyloop.settings import Settings

KEY_PREFIX = "rl_"


class SecurityConfigError(ValueError):
    """A keys file or secret setting cannot be read; the message names it."""


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def keys_file(settings: Settings) -> Path:
    return settings.api_keys_file or settings.home / "secrets" / "api_keys.json"


def _file_keys(path: Path) -> dict[str, str]:
    if not path.exists():
        return {}
    try:
        entries = json.loads(path.read_text())
        return {e["sha256"]: e["name"] for e in entries}
    except (ValueError, KeyError, TypeError) as exc:
        raise SecurityConfigError(f"{path}: not a list of {{'name', 'sha256'}} entries ({exc})") from exc


def _env_keys(spec: str | None) -> dict[str, str]:
    out = {}
    for item in filter(None, (s.strip() for s in (spec or "").split(","))):
        name, _, digest = item.rpartition(":")
        if len(digest) != 64 or not name:
            raise SecurityConfigError(f"REPLYLOOP_API_KEY_HASHES: {name or item!r} is not 'name:<64 hex digits>'")
        out[digest.lower()] = name
    return out


@dataclass
class ApiKeys:
    """sha256 -> key name; `name_of(key)` is None for an unknown key."""

    by_hash: dict[str, str]

    @classmethod
    def load(cls, settings: Settings) -> ApiKeys:
        return cls({**_file_keys(keys_file(settings)), **_env_keys(settings.api_key_hashes)})

    def name_of(self, key: str | None) -> str | None:
        if not key:
            return None
        digest = hash_key(key)
        for known, name in self.by_hash.items():
            if hmac.compare_digest(known, digest):
                return name
        return None


def create_key(settings: Settings, name: str) -> str:
    """A new key: its hash is appended to the keys file (mode 600); the key itself is returned once."""
    path = keys_file(settings)
    entries = json.loads(path.read_text()) if path.exists() else []
    if any(e["name"] == name for e in entries):
        raise SecurityConfigError(f"{path}: a key named {name!r} exists already; revoke it first or pick another name")
    key = KEY_PREFIX + secrets.token_urlsafe(32)
    entries.append({"name": name, "sha256": hash_key(key),
                    "created_at": datetime.now(UTC).isoformat(timespec="seconds")})
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(entries, indent=1))
    os.chmod(tmp, 0o600)
    tmp.replace(path)
    return key


def revoke_key(settings: Settings, name: str) -> bool:
    path = keys_file(settings)
    entries = json.loads(path.read_text()) if path.exists() else []
    kept = [e for e in entries if e["name"] != name]
    if len(kept) != len(entries):
        path.write_text(json.dumps(kept, indent=1))
    return len(kept) != len(entries)


def webhook_secrets(settings: Settings) -> dict[str, bytes]:
    out = {}
    for item in filter(None, (s.strip() for s in (settings.webhook_secrets or "").split(","))):
        platform, sep, secret = item.partition(":")
        if not sep or not platform or len(secret) < 16:
            raise SecurityConfigError(f"REPLYLOOP_WEBHOOK_SECRETS: entry for {platform or '?'!r} is not "
                                      "'platform:secret' with a secret of at least 16 characters")
        out[platform.strip().lower()] = secret.encode()
    return out


def sign(secret: bytes, timestamp: int | str, body: bytes) -> str:
    mac = hmac.new(secret, f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"v1={mac}"


class SignatureError(ValueError):
    """Why a webhook delivery was refused (said to the caller; names no secret)."""


def verify_signature(secret: bytes, timestamp: str | None, signature: str | None, body: bytes, *,
                     now: float, tolerance: int) -> None:
    if not timestamp or not signature:
        raise SignatureError("missing X-Replyloop-Timestamp or X-Replyloop-Signature header")
    try:
        ts = int(timestamp)
    except ValueError:
        raise SignatureError("X-Replyloop-Timestamp is not unix seconds") from None
    if abs(now - ts) > tolerance:
        raise SignatureError(f"stale delivery: timestamp is more than {tolerance} s from the server's clock")
    if not hmac.compare_digest(sign(secret, ts, body), signature.strip()):
        raise SignatureError("bad signature")
