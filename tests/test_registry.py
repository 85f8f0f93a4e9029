"""The registry as the single owner of versions, decisions and aliases (no model is loaded here)."""

from __future__ import annotations

import json

import mlflow.pyfunc
import pytest
from click.testing import CliRunner
from conftest import module_home

from replyloop import registry
from replyloop.registry import Tag

BASE_SHA = "ab" * 32


class Echo(mlflow.pyfunc.PythonModel):
    def predict(self, context, model_input, params=None):
        return list(model_input)


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """One MLflow store for the module (creating one costs seconds); each test its own registered model."""
    with module_home(tmp_path_factory, "registry") as settings:
        yield settings


@pytest.fixture
def settings(store, request):
    return store.model_copy(update={"model_name": f"rl-{request.node.name[5:40]}"})


def register(settings, tmp_path, *, key: str | None = None, adapter: bool = True) -> str:
    import mlflow

    folder = tmp_path / f"adapter-{len(registry.versions(settings))}-{key}"
    folder.mkdir()
    (folder / "adapter_config.json").write_text("{}")
    registry.client(settings)  # points MLflow at the settings' store
    with mlflow.start_run() as run:
        info = mlflow.pyfunc.log_model(name="assistant", python_model=Echo(), pip_requirements=["mlflow"],
                                       artifacts={"adapter": str(folder)} if adapter else None,
                                       model_config={"base_model_sha": BASE_SHA, "system_prompt": "hi"})
    return registry.register_version(settings, model_uri=info.model_uri, run_id=run.info.run_id,
                                     tags={Tag.SNAPSHOT: "s1", Tag.BASE_MODEL_SHA: BASE_SHA},
                                     description="test version", idempotency_key=key)


def decide(settings, version: str, passed: bool) -> None:
    registry.record_decision(settings, version, passed=passed, reasons=["test"], rules=[], sets={}, gate_file="g",
                             baselines={"champion": None, "base": BASE_SHA[:16]}, run_id=None)


def test_register_is_idempotent_per_airflow_run_and_download_needs_no_model_load(settings, tmp_path):
    v1 = register(settings, tmp_path, key="manual__2026-12-01")
    assert register(settings, tmp_path, key="manual__2026-12-01") == v1
    tags = registry.version_tags(settings, v1)
    assert tags[Tag.AIRFLOW_RUN_ID] == "manual__2026-12-01" and tags[Tag.SNAPSHOT] == "s1" and tags[Tag.RUN_ID]
    files = registry.download_version(settings, v1)
    assert (files.adapter_dir / "adapter_config.json").exists()
    assert files.base_model_sha == BASE_SHA and files.model_config["system_prompt"] == "hi"
    with pytest.raises(registry.RegistryError, match=f"{settings.model_name} has no version '42'"):
        registry.download_version(settings, "42")
    hollow = register(settings, tmp_path, adapter=False)
    with pytest.raises(registry.RegistryError, match=f"version {hollow} has no LoRA adapter"):
        registry.download_version(settings, hollow)


def test_decisions_and_aliases(settings, tmp_path):
    good, bad, pending = (register(settings, tmp_path) for _ in range(3))
    decide(settings, good, True)
    decide(settings, bad, False)
    assert registry.alias_version(settings, registry.CHALLENGER) == good  # a failed decision moves nothing
    assert registry.version_tags(settings, bad)[Tag.GATE] == "failed"
    assert registry.latest_unevaluated(settings) == pending

    registry.promote(settings, good, reason="gate passed", by="gate")
    for version, state in ((bad, "failed the gate"), (pending, "has no gate decision")):
        with pytest.raises(registry.RegistryError, match=f"refusing to promote .* version {version}: it {state}"):
            registry.promote(settings, version, reason="why not", by="ml-lead")
    with pytest.raises(registry.RegistryError, match="needs a reason"):
        registry.promote(settings, bad, reason=" ", by="ml-lead", force=True)
    assert registry.alias_version(settings, registry.CHAMPION) == good

    moved = registry.promote(settings, bad, reason="incident 12: hotfix", by="ml-lead", force=True)
    assert moved["champion"] == bad and moved["previous"] == good and moved["reason"].endswith("(forced)")
    for version in (good, bad):  # both versions involved carry the audit entry
        entry = registry.audit_log(settings, version)[-1]
        assert (entry["alias"], entry["from"], entry["to"], entry["by"]) == ("champion", good, bad, "ml-lead")
        assert entry["why"] == "incident 12: hotfix (forced)" and entry["at"].endswith("Z")


def test_rollback_goes_to_the_last_champion_that_passed_never_a_failed_one(settings, tmp_path):
    first, second, broken = (register(settings, tmp_path) for _ in range(3))
    decide(settings, first, True)
    decide(settings, second, True)
    decide(settings, broken, False)
    registry.promote(settings, first, reason="gate", by="gate")
    registry.promote(settings, broken, reason="forced for a demo", by="ml-lead", force=True)
    registry.promote(settings, second, reason="gate", by="gate")
    back = registry.rollback(settings, reason="bad replies reported", by="ml-lead")
    assert back["champion"] == first and back["previous"] == second  # skips the failed one in between
    with pytest.raises(registry.RegistryError, match=f"roll back to .* version {broken}: it failed the gate"):
        registry.rollback(settings, to=broken, reason="x", by="ml-lead")
    registry.rollback(settings, to=broken, reason="known risk", by="ml-lead", force=True)
    assert registry.alias_version(settings, registry.CHAMPION) == broken
    history = registry.champion_history(settings)
    assert [(h["from"], h["to"]) for h in history] == [(None, first), (first, broken), (broken, second),
                                                      (second, first), (first, broken)]
    assert history[-2]["why"] == "rollback: bad replies reported"


def test_rollback_without_a_champion_is_refused(settings):
    with pytest.raises(registry.RegistryError, match="has no champion to roll back"):
        registry.rollback(settings, reason="x", by="me")


def test_approval_is_recorded_on_the_version(settings, tmp_path):
    v = register(settings, tmp_path)
    registry.record_approval(settings, v, outcome="rejected", by="lead@acme", comment="replies too long")
    tags = registry.version_tags(settings, v)
    assert (tags[Tag.APPROVAL], tags[Tag.APPROVAL_BY], tags[Tag.APPROVAL_COMMENT]) == \
        ("rejected", "lead@acme", "replies too long")
    with pytest.raises(registry.RegistryError, match="approval outcome 'maybe'"):
        registry.record_approval(settings, v, outcome="maybe", by="x", comment="")


def test_cli_promote_needs_force_and_reason_for_a_failed_version(settings, tmp_path, monkeypatch):
    from replyloop.cli import main
    from replyloop.settings import get_settings

    monkeypatch.setenv("REPLYLOOP_USER", "ml-lead")
    monkeypatch.setenv("REPLYLOOP_MODEL_NAME", settings.model_name)
    get_settings.cache_clear()
    v = register(settings, tmp_path)
    decide(settings, v, False)
    out = CliRunner().invoke(main, ["promote", v])
    assert out.exit_code == 1 and f"version {v}: it failed the gate" in out.output
    out = CliRunner().invoke(main, ["promote", v, "--force"])
    assert out.exit_code == 2 and "--force needs --reason" in out.output
    assert registry.alias_version(settings, registry.CHAMPION) is None
    out = CliRunner().invoke(main, ["promote", v, "--force", "--reason", "incident 7"])
    assert out.exit_code == 0, out.output
    assert json.loads(registry.version_tags(settings, v)[Tag.AUDIT])[-1]["by"] == "ml-lead"



def test_a_failing_registry_is_an_error_not_an_empty_registry(settings, failing_registry_uri):
    """Only MLflow's "no such model / no such alias" means none; a failing server must not read as "no champion"
    (the gate would then judge a candidate against the base model alone) or as "no versions"."""
    from mlflow.exceptions import MlflowException

    assert registry.alias_version(settings, registry.CHAMPION) is None  # no model yet: none, no error
    assert registry.versions(settings) == []
    failing = settings.model_copy(update={"mlflow_tracking_uri": failing_registry_uri,
                                          "mlflow_http_max_retries": 0, "mlflow_http_timeout": 5})
    with pytest.raises(MlflowException, match="500"):
        registry.alias_version(failing, registry.CHAMPION)
    with pytest.raises(MlflowException, match="500"):
        registry.versions(failing)
