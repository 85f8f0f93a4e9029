"""The MLflow model registry: versions, the gate's decision, aliases, promotion and rollback.

Aliases: `champion` is served; `challenger` is the last version that passed the gate. Every move of
`champion` is appended to the registered model's tag `replyloop.champion_history`, so a rollback knows
where to go back to, and says who moved it and why.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime

from replyloop.settings import Settings
from replyloop.tracking import configure

log = logging.getLogger(__name__)
CHAMPION, CHALLENGER = "champion", "challenger"
HISTORY_TAG = "replyloop.champion_history"
GATE_TAG = "replyloop.gate"


class RegistryError(RuntimeError):
    pass


def client(settings: Settings):
    from mlflow import MlflowClient

    configure(settings)
    return MlflowClient(tracking_uri=settings.tracking_uri, registry_uri=settings.tracking_uri)


def alias_version(settings: Settings, alias: str) -> str | None:
    c = client(settings)
    try:
        return str(c.get_model_version_by_alias(settings.model_name, alias).version)
    except Exception:  # no registered model yet, or the alias is not set
        return None


def versions(settings: Settings) -> list:
    c = client(settings)
    try:
        found = c.search_model_versions(f"name='{settings.model_name}'")
    except Exception:
        return []
    return sorted(found, key=lambda v: int(v.version))


def latest_unevaluated(settings: Settings) -> str | None:
    pending = [v for v in versions(settings) if GATE_TAG not in (v.tags or {})]
    return str(pending[-1].version) if pending else None


def _history(c, name: str) -> list[dict]:
    tags = c.get_registered_model(name).tags or {}
    return json.loads(tags.get(HISTORY_TAG, "[]"))


def promote(settings: Settings, version: str | int, *, reason: str, by: str = "gate") -> dict:
    """Point `champion` at a version (it must have passed the gate unless `by` is a person forcing it)."""
    c = client(settings)
    version = str(version)
    mv = c.get_model_version(settings.model_name, version)
    if (mv.tags or {}).get(GATE_TAG) != "passed" and by == "gate":
        raise RegistryError(f"version {version} has not passed the gate ({GATE_TAG}={mv.tags.get(GATE_TAG)!r})")
    previous = alias_version(settings, CHAMPION)
    c.set_registered_model_alias(settings.model_name, CHAMPION, version)
    history = _history(c, settings.model_name)
    history.append({"version": version, "previous": previous, "by": by, "reason": reason,
                    "at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")})
    c.set_registered_model_tag(settings.model_name, HISTORY_TAG, json.dumps(history[-50:]))
    log.info("champion: %s -> %s (%s, by %s)", previous, version, reason, by)
    return {"champion": version, "previous": previous}


def rollback(settings: Settings, *, to: str | int | None = None, reason: str = "manual rollback") -> dict:
    """Move `champion` back: to the given version, or to the champion before the current one."""
    c = client(settings)
    current = alias_version(settings, CHAMPION)
    if current is None:
        raise RegistryError(f"{settings.model_name} has no champion to roll back")
    if to is None:
        history = _history(c, settings.model_name)
        earlier = [h["previous"] for h in reversed(history) if h["version"] == current and h["previous"]]
        if not earlier:
            raise RegistryError(f"no earlier champion recorded for version {current}; use --to VERSION")
        to = earlier[0]
    return promote(settings, to, reason=reason, by="rollback")


def status(settings: Settings) -> dict:
    vs = versions(settings)
    aliases = {a: alias_version(settings, a) if vs else None for a in (CHAMPION, CHALLENGER)}
    return {
        "model": settings.model_name,
        "tracking_uri": settings.tracking_uri,
        **aliases,
        "versions": [{"version": str(v.version), "run_id": v.run_id, "created": datetime.fromtimestamp(
            v.creation_timestamp / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "gate": (v.tags or {}).get(GATE_TAG, "pending"),
            "snapshot": (v.tags or {}).get("replyloop.snapshot_id"),
            "aliases": [a for a, version in aliases.items() if version == str(v.version)]}
            for v in vs],
    }
