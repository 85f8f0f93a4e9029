"""Registered versions, the gate's record, promotion and rollback by alias."""

from __future__ import annotations

import json

import pytest

from replyloop import registry
from replyloop.evaluation.run import EvaluationError, evaluate_candidate
from replyloop.training.config import load_train_config
from replyloop.training.train import train


def test_version_carries_lineage_and_decision(tiny_loop):
    settings, trained, gate = tiny_loop["settings"], tiny_loop["trained"], tiny_loop["gate"]
    c = registry.client(settings)
    mv = c.get_model_version(settings.model_name, trained["version"])
    assert mv.tags["replyloop.snapshot_id"] == trained["snapshot_id"]
    assert len(mv.tags["replyloop.base_model_sha"]) == 64
    assert mv.tags["replyloop.code_version"]
    assert mv.tags[registry.GATE_TAG] == ("passed" if gate["passed"] else "failed")
    assert mv.tags["replyloop.gate.reasons"]
    assert gate["baseline"] == "base model"
    run = c.get_run(trained["run_id"])
    assert run.data.params["max_steps"] == "3" and "train_loss" in run.data.metrics
    artifacts = {a.path for a in c.list_artifacts(trained["run_id"])}
    assert {"plots", "config", "data"} <= artifacts
    eval_artifacts = {a.path for a in c.list_artifacts(gate["eval_run_id"], "gate")}
    assert {"gate/report.html", "gate/decision.json", "gate/comparison.png", "gate/replies.json"} <= eval_artifacts


def test_aliases_follow_the_gate(tiny_loop):
    settings, gate = tiny_loop["settings"], tiny_loop["gate"]
    if gate["passed"]:
        assert registry.alias_version(settings, "champion") == gate["version"]
        assert registry.alias_version(settings, "challenger") == gate["version"]
    else:
        assert registry.alias_version(settings, "champion") is None


def test_promote_rollback_and_refusals(tiny_loop):
    settings = tiny_loop["settings"]
    first = tiny_loop["gate"]["version"]
    if not tiny_loop["gate"]["passed"]:
        registry.promote(settings, first, reason="test setup", by="manual")
    # a second candidate that fails nothing yet: no decision, so the gate refuses to promote it
    second = train(load_train_config(max_steps=1, batch_size=2, max_eval_examples=2), settings)["version"]
    with pytest.raises(registry.RegistryError, match=f"version {second} has not passed the gate"):
        registry.promote(settings, second, reason="should fail")
    registry.promote(settings, second, reason="ML lead override", by="manual")
    assert registry.alias_version(settings, "champion") == second
    back = registry.rollback(settings, reason="bad replies reported")
    assert back == {"champion": first, "previous": second}
    history = json.loads(registry.client(settings).get_registered_model(settings.model_name).tags[registry.HISTORY_TAG])
    assert [h["by"] for h in history][-2:] == ["manual", "rollback"]
    assert history[-1]["reason"] == "bad replies reported"
    status = registry.status(settings)
    assert status["champion"] == first
    assert {v["version"] for v in status["versions"]} >= {first, second}
    # evaluating the second version against the champion records a decision on it
    result = evaluate_candidate(settings, version=second, promote=False, max_prompts=2)
    assert result["baseline"] == f"champion v{first}"
    assert registry.latest_unevaluated(settings) != second
    while (pending := registry.latest_unevaluated(settings)) is not None:  # other tests may have added some
        evaluate_candidate(settings, version=pending, promote=False, max_prompts=2)
    with pytest.raises(EvaluationError, match="no candidate"):
        evaluate_candidate(settings)


def test_rollback_without_history_is_refused(settings):
    assert "loop" not in str(settings.home), settings.home
    with pytest.raises(registry.RegistryError, match="has no champion to roll back"):
        registry.rollback(settings)
