"""Evaluate a candidate version against its baselines and promote it only if every gate rule passes.

    gate file -> version files -> sets (held-out, golden, safety; hashed) -> evidence
      -> candidate (serving load path) answers every set + infra latency -> champion, base model answer
      -> metrics per reply -> rules per set -> MLflow run + task-log table -> decision on the version
      -> `challenger` (passed) -> `champion` (passed and promote)

Baselines: the current `champion` (unless it is the candidate) and always the base model the candidate
was trained from; on a cold start only the base model. Bad input (gate file, sets, version, judge model)
stops before anything is written, so the aliases stay where they were.
"""

from __future__ import annotations

import gc
import logging

from replyloop import registry
from replyloop.evaluation import answerers
from replyloop.evaluation.gate import GateConfig, decide, evidence_rules, verdict
from replyloop.evaluation.infra import latency_check
from replyloop.evaluation.report import log_run, log_table, metric_rows
from replyloop.evaluation.scoring import score_model
from replyloop.evaluation.sets import load_sets
from replyloop.registry import Tag, load_version  # noqa: F401  (load_version: older import path)
from replyloop.settings import Settings, get_settings

log = logging.getLogger(__name__)


class EvaluationError(RuntimeError):
    pass


def _check_scorers(cfg: GateConfig, settings: Settings) -> None:
    """Fail before any model loads when the judge or the embedding model is missing."""
    used = {m for names in cfg.metrics.values() for m in names}
    if "safety" in used:
        from replyloop.evaluation.judge import get_judge

        get_judge(settings)
    if "expected_behaviour" in used:
        from replyloop.evaluation.behaviour import get_classifier

        get_classifier(settings)  # BehaviourError names the missing or malformed labelled file
    if used & {"semantic_similarity", "safety", "expected_behaviour"}:
        from replyloop.evaluation.embeddings import model_dir

        model_dir()  # EmbeddingError names the missing package or file


def metric_options(cfg: GateConfig, settings: Settings) -> dict:
    """The gate file's metric options; rude_likelihood's lines come from the judge's labelled replies
    (`REPLYLOOP_JUDGE_REPLIES`, default the shipped set)."""
    rude = {**cfg.metric_options.get("rude_likelihood", {}), "replies": settings.judge_replies}
    return {**cfg.metric_options, "rude_likelihood": rude}


def version_to_evaluate(event_extras: list[dict], param: str | int | None) -> str | None:
    """The version named by the newest triggering `replyloop.candidate_model` event (extra `version`);
    a manual run (no event) keeps its Param; None means the newest version without a decision."""
    for extra in reversed(event_extras):
        if extra.get("version"):
            return str(extra["version"])
    return str(param) if param else None


def _pick_version(settings: Settings, version: str | None) -> str:
    version = str(version) if version else registry.latest_unevaluated(settings)
    if version is None:
        raise EvaluationError(f"no candidate: every version of {settings.model_name} already has a gate decision; "
                              "train a new one or pass a version")
    return version


def labelled_sets(settings: Settings, cfg: GateConfig) -> dict:
    """The labelled replies the judges of this gate were fitted on, recorded with the decision like the
    evaluation sets (a brand's own labelled set changes what `safety` and `expected_behaviour` mean)."""
    from replyloop.evaluation import behaviour, judge

    found, used = {}, {m for names in cfg.metrics.values() for m in names}
    if {"safety", "safety_severe"} & used:
        r = judge.get_judge(settings).report
        found["judge_labelled"] = {"sha256": r.labelled_sha256, "n": r.n_fit, "source": r.labelled_set}
    if "expected_behaviour" in used:
        r = behaviour.get_classifier(settings).report
        found["behaviour_labelled"] = {"sha256": r.labelled_sha256, "n": r.n_fit, "source": r.labelled_set}
    return found


def evaluate_candidate(settings: Settings | None = None, *, version: str | None = None, promote: bool = True,
                       load=None) -> dict:
    """Run the gate for `version` (default: the newest version without a decision). `load(settings,
    version)` returns a reply generator; default: the serving engine (`answerers.load_candidate`)."""
    settings = settings or get_settings()
    load = load or answerers.load_candidate
    cfg = GateConfig.load(settings.gate_file)
    version = _pick_version(settings, version)
    files = registry.download_version(settings, version)  # names the version if missing or without adapter
    sets = load_sets(settings, files.tags.get(Tag.SNAPSHOT))
    champion = registry.alias_version(settings, registry.CHAMPION)
    champion = champion if champion != version else None
    baselines = {"champion": f"v{champion}" if champion else None, "base": files.base_model_sha[:16]}
    header = {"candidate": version, "baselines": baselines, "sets": {k: s.record() for k, s in sets.items()},
              "gate_file": f"{cfg.path} (sha256 {cfg.sha256[:16]})"}

    evidence = evidence_rules(cfg, sets)
    if not all(r["passed"] for r in evidence):  # too little evidence: fail closed without scoring
        return _finish(settings, cfg, {**verdict(evidence), **header}, sets, {}, version, promote)
    _check_scorers(cfg, settings)
    header["sets"].update(labelled_sets(settings, cfg))
    log.info("evaluating v%s against %s on %s", version, baselines,
             ", ".join(f"{len(s.items)} {k}" for k, s in sets.items()))
    kw = {"options": metric_options(cfg, settings)}
    candidate = load(settings, version)
    header["engine"] = getattr(getattr(candidate, "engine", None), "name", getattr(load, "__qualname__", str(load)))
    models = {f"candidate v{version}": score_model(candidate, sets, cfg.metrics, **kw)}
    infra = latency_check(settings, candidate, sets["golden"], path=f"{header['engine']} engine") \
        if cfg.rules.infra.enabled else None
    del candidate
    scored_baselines = {}
    if champion:
        gen = load(settings, champion)
        scored_baselines["champion"] = models[f"champion v{champion}"] = score_model(gen, sets, cfg.metrics, **kw)
        del gen
    gen = answerers.load_base(settings, files)
    scored_baselines["base"] = models["base model"] = score_model(gen, sets, cfg.metrics, **kw)
    del gen
    gc.collect()
    decision = {**decide(cfg, sets, models[f"candidate v{version}"], scored_baselines, infra), **header,
                "infra": infra}
    return _finish(settings, cfg, decision, sets, models, version, promote)


def _finish(settings, cfg, decision, sets, models, version, promote) -> dict:
    slice_keys = cfg.rules.slices.by if cfg.rules.slices else []
    run_id = log_run(settings, decision, cfg, sets, models, f"candidate v{version}", slice_keys) if models else None
    table_header, rows = metric_rows(sets, models, slice_keys, cfg.bootstrap) if models else (["set"], [])
    log.info("\n%s", log_table(decision, table_header, rows))
    registry.record_decision(settings, version, passed=decision["passed"], reasons=decision["reasons"],
                             baselines=decision["baselines"], rules=decision["rules"], sets=decision["sets"],
                             gate_file=decision["gate_file"], run_id=run_id)
    promoted = None
    if decision["passed"] and promote:
        against = " and ".join(f"{k} {v}" for k, v in decision["baselines"].items() if v)
        registry.promote(settings, version, reason=f"gate passed against {against}", by="gate")
        promoted = version
    return {"version": version, "passed": decision["passed"], "reasons": decision["reasons"],
            "baselines": decision["baselines"], "promoted": promoted, "eval_run_id": run_id,
            "champion": registry.alias_version(settings, registry.CHAMPION),
            "failed_rules": [r for r in decision["rules"] if not r["passed"]],
            "rules": len(decision["rules"]), "sets": decision["sets"], "engine": decision.get("engine")}
