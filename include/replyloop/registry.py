"""The MLflow model registry, with one owner: versions, tags, gate decisions, aliases, loading a version.

Nothing else in replyloop writes registry tags or moves aliases, and no other module spells a tag name
(use `Tag.*`). Aliases: `champion` is served; `challenger` is the last version that passed the gate.

Every move of `champion` leaves an audit entry (who, when, why, from, to) on each version involved
(tag `replyloop.audit`) and on the registered model (`replyloop.champion_history`, which rollback reads).
A version that failed the gate, or has no decision, is promoted or rolled back to only with `force=True`
and a reason.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from replyloop.settings import Settings
from replyloop.tracking import configure

log = logging.getLogger(__name__)
CHAMPION, CHALLENGER = "champion", "challenger"
_ABSENT = ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE")  # MLflow's codes for "no such model/alias"
_AUDIT_KEEP = 50  # entries kept per audit tag (registered-model tags hold at most 5000 characters)


class Tag:
    """Every tag name replyloop writes on a model version (and the registered model's history tag)."""

    SNAPSHOT = "replyloop.snapshot_id"
    DATASET_HASH = "replyloop.dataset_hash"
    BASE_MODEL_SHA = "replyloop.base_model_sha"
    CHAT_TEMPLATE_SHA = "replyloop.chat_template_sha"
    CODE_VERSION = "replyloop.code_version"
    RUN_ID = "replyloop.run_id"
    AIRFLOW_RUN_ID = "replyloop.airflow_run_id"  # also the idempotency key of a training task
    GATE = "replyloop.gate"  # "passed" | "failed" (absent = no decision yet)
    GATE_REASONS = "replyloop.gate.reasons"  # the failed rules, one per line ("every rule passed" otherwise)
    GATE_BASELINES = "replyloop.gate.baselines"  # JSON {"champion": "v3" | null, "base": "<sha16>"}
    GATE_RULES = "replyloop.gate.rules"  # JSON list: every rule with set, metric, numbers, interval, verdict
    GATE_SETS = "replyloop.gate.sets"  # JSON {set: {"sha256": ..., "n": ..., "source": ...}}
    GATE_FILE = "replyloop.gate.file"  # path and sha256 of the gate YAML that decided
    GATE_RUN_ID = "replyloop.gate.run_id"  # the MLflow run with the report
    APPROVAL = "replyloop.approval"  # "approved" | "rejected" | "timed_out"
    APPROVAL_BY = "replyloop.approval.by"
    APPROVAL_COMMENT = "replyloop.approval.comment"
    AUDIT = "replyloop.audit"  # JSON list of alias moves this version took part in
    HISTORY = "replyloop.champion_history"  # on the registered model: every champion move


GATE_TAG = Tag.GATE  # older name, kept for callers not yet moved to Tag.GATE


class RegistryError(RuntimeError):
    """A registry operation cannot go ahead; the message names the model, version or alias."""


@dataclass(frozen=True)
class VersionFiles:
    version: str
    adapter_dir: Path
    base_model_sha: str
    model_config: dict
    tags: dict


def client(settings: Settings):
    from mlflow import MlflowClient

    configure(settings)
    return MlflowClient(tracking_uri=settings.tracking_uri, registry_uri=settings.tracking_uri)


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _model_version(settings: Settings, version: str | int):
    from mlflow.exceptions import MlflowException

    try:
        return client(settings).get_model_version(settings.model_name, str(version))
    except MlflowException as exc:
        raise RegistryError(f"{settings.model_name} has no version {version!r}") from exc


# --- reading -----------------------------------------------------------------------------------------


def versions(settings: Settings) -> list:
    """Every version of the registered model, sorted by version number (empty before the first one)."""
    from mlflow.exceptions import MlflowException

    try:
        found = client(settings).search_model_versions(f"name='{settings.model_name}'")
    except MlflowException as exc:
        if exc.error_code != "RESOURCE_DOES_NOT_EXIST":  # an unreachable or failing server is not "none yet"
            raise
        return []
    return sorted(found, key=lambda v: int(v.version))


def version_tags(settings: Settings, version: str | int) -> dict[str, str]:
    return dict(_model_version(settings, version).tags or {})


def alias_version(settings: Settings, alias: str) -> str | None:
    from mlflow.exceptions import MlflowException

    try:
        return str(client(settings).get_model_version_by_alias(settings.model_name, alias).version)
    except MlflowException as exc:
        # No registered model yet (RESOURCE_DOES_NOT_EXIST) or the alias is not set (INVALID_PARAMETER_VALUE).
        # Anything else (a server error, an unreachable server) must not read as "no champion": the gate
        # would then compare against the base model alone.
        if exc.error_code not in _ABSENT:
            raise
        return None


def latest_unevaluated(settings: Settings) -> str | None:
    pending = [v for v in versions(settings) if Tag.GATE not in (v.tags or {})]
    return str(pending[-1].version) if pending else None


def audit_log(settings: Settings, version: str | int) -> list[dict]:
    return json.loads(version_tags(settings, version).get(Tag.AUDIT, "[]"))


def champion_history(settings: Settings) -> list[dict]:
    from mlflow.exceptions import MlflowException

    try:
        tags = client(settings).get_registered_model(settings.model_name).tags or {}
    except MlflowException:
        return []
    return json.loads(tags.get(Tag.HISTORY, "[]"))


# --- registering and loading -------------------------------------------------------------------------


def register_version(settings: Settings, *, model_uri: str, run_id: str, tags: dict[str, str], description: str,
                     idempotency_key: str | None = None) -> str:
    """Register `model_uri` as a new version with `tags`; with an idempotency key already used, return
    the version that carries it instead of registering a second one."""
    import mlflow

    if idempotency_key:
        for v in versions(settings):
            if (v.tags or {}).get(Tag.AIRFLOW_RUN_ID) == idempotency_key:
                log.info("version %s already registered for %s", v.version, idempotency_key)
                return str(v.version)
    configure(settings)
    all_tags = {**tags, Tag.RUN_ID: run_id, **({Tag.AIRFLOW_RUN_ID: idempotency_key} if idempotency_key else {})}
    mv = mlflow.register_model(model_uri, settings.model_name, tags=all_tags)
    client(settings).update_model_version(settings.model_name, mv.version, description=description)
    log.info("registered %s version %s (%s)", settings.model_name, mv.version, model_uri)
    return str(mv.version)


def download_version(settings: Settings, version: str | int) -> VersionFiles:
    """The adapter folder and model config of a version, downloaded without importing torch."""
    import mlflow
    from mlflow.models import Model

    mv = _model_version(settings, version)
    configure(settings)
    try:
        local = Path(mlflow.artifacts.download_artifacts(artifact_uri=f"models:/{settings.model_name}/{mv.version}"))
    except Exception as exc:
        raise RegistryError(f"{settings.model_name} version {mv.version}: cannot download its files ({exc})") from exc
    pyfunc = Model.load(local / "MLmodel").flavors.get("python_function", {})
    entry = (pyfunc.get("artifacts") or {}).get("adapter") or {}
    adapter = local / entry.get("path", "artifacts/adapter")
    if not (adapter / "adapter_config.json").exists():
        raise RegistryError(f"{settings.model_name} version {mv.version} has no LoRA adapter "
                            f"({adapter / 'adapter_config.json'} is missing)")
    config = pyfunc.get("config") or pyfunc.get("model_config") or {}  # MLflow stores model_config as "config"
    sha = config.get("base_model_sha") or (mv.tags or {}).get(Tag.BASE_MODEL_SHA)
    if not sha:
        raise RegistryError(f"{settings.model_name} version {mv.version} names no base model ({Tag.BASE_MODEL_SHA})")
    return VersionFiles(str(mv.version), adapter, sha, config, dict(mv.tags or {}))


def load_version(settings: Settings, version: str | int):
    """A `ReplyGenerator` for a registered version, loaded as the server loads it (MLflow pyfunc)."""
    import mlflow

    files = download_version(settings, version)  # names the version when it is missing or has no adapter
    model = mlflow.pyfunc.load_model(f"models:/{settings.model_name}/{files.version}")
    return model.unwrap_python_model().generator


# --- decisions, approval and aliases -------------------------------------------------------------------


def record_decision(settings: Settings, version: str | int, *, passed: bool, reasons: list[str],
                    baselines: dict, rules: list[dict], sets: dict, gate_file: str, run_id: str | None) -> None:
    """Write the gate's decision on the version; a passed version also becomes `challenger`."""
    c = client(settings)
    version = str(_model_version(settings, version).version)
    tags = {Tag.GATE: "passed" if passed else "failed", Tag.GATE_REASONS: "\n".join(reasons),
            Tag.GATE_BASELINES: json.dumps(baselines), Tag.GATE_RULES: json.dumps(rules),
            Tag.GATE_SETS: json.dumps(sets), Tag.GATE_FILE: gate_file}
    if run_id:
        tags[Tag.GATE_RUN_ID] = run_id
    for key, value in tags.items():
        c.set_model_version_tag(settings.model_name, version, key, value)
    if passed:
        _move(settings, CHALLENGER, version, by="gate", reason="passed the gate")


def record_approval(settings: Settings, version: str | int, *, outcome: str, by: str, comment: str) -> None:
    """Record a human approval step on the version: outcome approved | rejected | timed_out."""
    if outcome not in ("approved", "rejected", "timed_out"):
        raise RegistryError(f"approval outcome {outcome!r} for version {version}: expected approved, rejected "
                            "or timed_out")
    c = client(settings)
    version = str(_model_version(settings, version).version)
    for key, value in {Tag.APPROVAL: outcome, Tag.APPROVAL_BY: by, Tag.APPROVAL_COMMENT: comment}.items():
        c.set_model_version_tag(settings.model_name, version, key, value or "")


def _append_json(current: str | None, entry: dict) -> str:
    entries = json.loads(current or "[]")
    entries.append(entry)
    return json.dumps(entries[-_AUDIT_KEEP:])


def _move(settings: Settings, alias: str, version: str, *, by: str, reason: str) -> dict:
    """Point `alias` at `version` and leave an audit entry on both versions involved."""
    c = client(settings)
    previous = alias_version(settings, alias)
    entry = {"alias": alias, "from": previous, "to": version, "by": by, "why": reason, "at": _now()}
    c.set_registered_model_alias(settings.model_name, alias, version)
    for v in {version, previous} - {None}:
        tags = version_tags(settings, v)
        c.set_model_version_tag(settings.model_name, v, Tag.AUDIT, _append_json(tags.get(Tag.AUDIT), entry))
    if alias == CHAMPION:
        model_tags = c.get_registered_model(settings.model_name).tags or {}
        c.set_registered_model_tag(settings.model_name, Tag.HISTORY, _append_json(model_tags.get(Tag.HISTORY), entry))
    log.info("%s: %s -> %s (%s, by %s)", alias, previous, version, reason, by)
    return entry


def _check_movable(settings: Settings, version: str, *, force: bool, reason: str, verb: str) -> str:
    mv = _model_version(settings, version)
    gate = (mv.tags or {}).get(Tag.GATE)
    if gate != "passed":
        state = "failed the gate" if gate == "failed" else "has no gate decision"
        if not force:
            raise RegistryError(f"refusing to {verb} {settings.model_name} version {mv.version}: it {state} "
                                f"({Tag.GATE}={gate!r}); use force with a reason to override")
        if not reason or not reason.strip():
            raise RegistryError(f"forcing version {mv.version}, which {state}, needs a reason")
    return str(mv.version)


def promote(settings: Settings, version: str | int, *, reason: str, by: str, force: bool = False) -> dict:
    """Point `champion` at a version that passed the gate (any version with `force=True` and a reason)."""
    version = _check_movable(settings, str(version), force=force, reason=reason, verb="promote")
    entry = _move(settings, CHAMPION, version, by=by, reason=reason + (" (forced)" if force else ""))
    return {"champion": version, "previous": entry["from"], "by": by, "reason": entry["why"], "at": entry["at"]}


def rollback(settings: Settings, *, to: str | int | None = None, reason: str, by: str, force: bool = False) -> dict:
    """Move `champion` back: to `to`, or to the most recent earlier champion that did not fail the gate."""
    current = alias_version(settings, CHAMPION)
    if current is None:
        raise RegistryError(f"{settings.model_name} has no champion to roll back")
    if to is None:
        to = _previous_champion(settings, current)
    version = _check_movable(settings, str(to), force=force, reason=reason, verb="roll back to")
    if version == current:
        raise RegistryError(f"version {version} is already the champion of {settings.model_name}")
    entry = _move(settings, CHAMPION, version, by=by, reason=f"rollback: {reason}" + (" (forced)" if force else ""))
    return {"champion": version, "previous": entry["from"], "by": by, "reason": entry["why"], "at": entry["at"]}


def _previous_champion(settings: Settings, current: str) -> str:
    """The most recent earlier champion that passed the gate (failed ones in between are skipped)."""
    gates = {str(v.version): (v.tags or {}).get(Tag.GATE) for v in versions(settings)}
    for entry in reversed(champion_history(settings)):
        earlier = entry.get("from")
        if earlier and earlier != current and gates.get(earlier) == "passed":
            return earlier
    raise RegistryError(f"no earlier champion of {settings.model_name} that passed the gate is recorded before "
                        f"version {current}; pass the version to roll back to (and force for a failed one)")


def status(settings: Settings) -> dict:
    vs = versions(settings)
    aliases = {a: alias_version(settings, a) if vs else None for a in (CHAMPION, CHALLENGER)}
    return {
        "model": settings.model_name,
        "tracking_uri": settings.tracking_uri,
        **aliases,
        "versions": [{"version": str(v.version), "run_id": v.run_id, "created": datetime.fromtimestamp(
            v.creation_timestamp / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "gate": (v.tags or {}).get(Tag.GATE, "pending"),
            "approval": (v.tags or {}).get(Tag.APPROVAL),
            "snapshot": (v.tags or {}).get(Tag.SNAPSHOT),
            "aliases": [a for a, version in aliases.items() if version == str(v.version)]}
            for v in vs],
    }
