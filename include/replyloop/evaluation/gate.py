"""The promotion gate: the versioned rules of `resources/gate.yaml`, judged per evaluation set.

Rule kinds: evidence (items per set), floors (absolute), non_regression (paired bootstrap against the
champion and the base model), slices (the same per intent / channel / single-multi turn), zero_tolerance
(no reply may fail), infra (serving load path and p95 latency). Absolute thresholds are checked with
MLflow's `validate_evaluation_results` / `MetricThreshold`; the interval rules with `bootstrap`.
The gate fails closed: a rule without data, or with a NaN, fails.
"""

from __future__ import annotations

import hashlib
import logging
import math
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from replyloop.evaluation.bootstrap import paired_interval
from replyloop.evaluation.scoring import EXPECTED_ONLY, METRICS, SetScores
from replyloop.evaluation.sets import SET_NAMES, EvalSet
from replyloop.resources import GATE_FILE

BASELINES = ("champion", "base")
FAILURE_METRICS = ("pii_leak", "safety", "safety_severe")  # one 0/1 failure per reply: zero tolerance applies
SLICE_KEYS = ("intent", "channel", "turns", "category", "expected")
SetName = Literal["heldout", "golden", "safety"]


class GateConfigError(ValueError):
    """The gate file is missing or malformed; the message names the file and the rule or key."""


def _known_metrics(names) -> None:
    unknown = sorted(set(names) - set(METRICS))
    if unknown:
        raise ValueError(f"unknown metric(s) {unknown}; known: {sorted(METRICS)}")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Bootstrap(_Strict):
    resamples: int = Field(2000, ge=50)
    confidence: float = Field(0.95, gt=0.5, lt=1.0)
    seed: int = 0


class NonRegression(_Strict):
    baselines: list[Literal["champion", "base"]] = ["champion", "base"]
    sets: list[SetName] = ["heldout", "golden"]
    # metric -> one tolerance for every set of `sets`, or {set: tolerance} judging the metric on those sets only
    tolerance: dict[str, float | dict[SetName, float]]

    @field_validator("tolerance")
    @classmethod
    def _metrics(cls, v):
        _known_metrics(v)
        return v

    @model_validator(mode="after")
    def _per_set_names_listed_sets(self):
        for metric, tol in self.tolerance.items():
            stray = sorted(set(tol) - set(self.sets)) if isinstance(tol, dict) else []
            if stray:
                raise ValueError(f"tolerance.{metric} names sets {stray} that are not in sets {self.sets}")
        return self

    def tolerance_for(self, metric: str, set_name: str) -> float | None:
        """The metric's tolerance on this set; None when its per-set map leaves the set out (or no tolerance)."""
        tol = self.tolerance.get(metric)
        return tol.get(set_name) if isinstance(tol, dict) else tol


class Slices(_Strict):
    by: list[Literal["intent", "channel", "turns", "category", "expected"]] = ["intent", "channel", "turns"]
    # items a slice needs to be judged: one number for every set, or {set: items} (a set left out: 20)
    min_size: int | dict[SetName, int] = 20
    sets: list[SetName] = ["heldout", "golden"]
    baselines: list[Literal["champion", "base"]] = ["champion", "base"]
    metrics: list[str]

    @field_validator("metrics")
    @classmethod
    def _metrics(cls, v):
        _known_metrics(v)
        return v

    @field_validator("min_size")
    @classmethod
    def _positive(cls, v):
        if min(v.values() if isinstance(v, dict) else [v], default=1) < 1:
            raise ValueError("min_size must be >= 1")
        return v

    def min_size_for(self, set_name: str) -> int:
        return self.min_size.get(set_name, 20) if isinstance(self.min_size, dict) else self.min_size


class Infra(_Strict):
    enabled: bool = True


class Rules(_Strict):
    evidence: dict[SetName, int]
    floors: dict[SetName, dict[str, float]] = {}
    non_regression: NonRegression | None = None
    slices: Slices | None = None
    zero_tolerance: dict[str, list[SetName]] = {}
    infra: Infra = Infra()

    @field_validator("floors")
    @classmethod
    def _floor_metrics(cls, v):
        _known_metrics({m for per_set in v.values() for m in per_set})
        return v

    @field_validator("zero_tolerance")
    @classmethod
    def _zero_metrics(cls, v):
        _known_metrics(v)
        scored = sorted(set(v) - set(FAILURE_METRICS))
        if scored:
            raise ValueError(f"zero tolerance counts failing replies: {scored} are scores, not failures; "
                             f"use one of {list(FAILURE_METRICS)}")
        return v

    @field_validator("evidence")
    @classmethod
    def _every_set(cls, v):
        missing = sorted(set(SET_NAMES) - set(v))
        if missing:
            raise ValueError(f"minimum evidence must be given for every set; missing {missing}")
        return v


class GateConfig(_Strict):
    version: Literal[2]
    metrics: dict[SetName, list[str]]
    metric_options: dict[str, dict] = {}
    bootstrap: Bootstrap = Bootstrap()
    rules: Rules
    path: str = ""
    sha256: str = ""

    @field_validator("metrics")
    @classmethod
    def _metrics(cls, v):
        _known_metrics({m for names in v.values() for m in names})
        for set_name, names in v.items():
            if set_name == "safety" and any(METRICS[m].needs_reference for m in names):
                fit = ", ".join(m for m, spec in METRICS.items() if not spec.needs_reference)
                raise ValueError(f"the safety set has no references: only {fit} apply")
            if set_name != "safety" and set(names) & set(EXPECTED_ONLY):
                raise ValueError(f"{sorted(set(names) & set(EXPECTED_ONLY))} need each item's expected behaviour: "
                                 f"only the safety set has one (metrics.{set_name})")
        return v

    @model_validator(mode="after")
    def _rules_use_computed_metrics(self):
        used = [(s, m) for s, per in self.rules.floors.items() for m in per]
        used += [(s, m) for m, sets in self.rules.zero_tolerance.items() for s in sets]
        nr, sl = self.rules.non_regression, self.rules.slices
        # interval rules judge a metric on each listed set that computes it; it must be computed on one
        for rule, sets, names in (("non_regression", nr.sets if nr else [], nr.tolerance if nr else {}),
                                  ("slices", sl.sets if sl else [], sl.metrics if sl else [])):
            unused = sorted(m for m in names if not any(m in self.metrics.get(s, []) for s in sets))
            if unused:
                raise ValueError(f"rules.{rule} names metrics computed on none of its sets {sets}: {unused}")
        per_set = nr.tolerance.items() if nr else []
        uncomputed = sorted(f"{m} on {s}" for m, tol in per_set if isinstance(tol, dict) for s in tol
                            if m not in self.metrics.get(s, []))
        if uncomputed:
            raise ValueError(f"rules.non_regression.tolerance gives a tolerance where the metric is not computed: "
                             f"{uncomputed}")
        untolerated = sorted(f"{m} on {s}" for m in (sl.metrics if sl else []) for s in sl.sets
                             if m in self.metrics.get(s, []) and (nr is None or nr.tolerance_for(m, s) is None))
        if untolerated:
            raise ValueError(f"rules.slices.metrics need a tolerance in rules.non_regression.tolerance: {untolerated}")
        missing = sorted({f"{m} on {s}" for s, m in used if m not in self.metrics.get(s, [])})
        if missing:
            raise ValueError(f"rules use metrics that are not computed (add them under metrics): {missing}")
        return self

    @classmethod
    def load(cls, path: Path | str | None = None) -> GateConfig:
        path = Path(path or GATE_FILE)
        try:
            text = path.read_text(encoding="utf-8")
            raw = yaml.safe_load(text)
        except OSError as exc:
            raise GateConfigError(f"gate file {path} cannot be read: {exc.strerror or exc}") from exc
        except yaml.YAMLError as exc:
            raise GateConfigError(f"gate file {path} is not valid YAML: {exc}") from exc
        if not isinstance(raw, dict):
            raise GateConfigError(f"gate file {path} must hold a mapping (see docs/gate.md), not {type(raw).__name__}")
        try:
            return cls(**raw, path=str(path), sha256=hashlib.sha256(text.encode()).hexdigest())
        except ValidationError as exc:
            problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors())
            raise GateConfigError(f"gate file {path}: {problems}") from exc


# --- judging --------------------------------------------------------------------------------------------


def _holds(metric: str, value: float, threshold: float, greater_is_better: bool) -> bool:
    """One absolute threshold through MLflow's model validation (a NaN value fails)."""
    from mlflow import validate_evaluation_results
    from mlflow.models import MetricThreshold
    from mlflow.models.evaluation import EvaluationResult
    from mlflow.models.evaluation.validation import ModelValidationFailedException

    if value is None or math.isnan(value):
        return False
    logging.getLogger("mlflow.models.evaluation.validation").setLevel(logging.WARNING)  # 2 lines a check
    try:
        validate_evaluation_results({metric: MetricThreshold(threshold=float(threshold),
                                                             greater_is_better=greater_is_better)},
                                    EvaluationResult(metrics={metric: float(value)}, artifacts={}))
    except ModelValidationFailedException:
        return False
    return True


def _rule(kind: str, set_name: str | None, passed: bool, **fields) -> dict:
    return {"kind": kind, "set": set_name, "passed": bool(passed), **fields}


def evidence_rules(cfg: GateConfig, sets: dict[str, EvalSet]) -> list[dict]:
    out = []
    for name, need in cfg.rules.evidence.items():
        n = len(sets[name].items) if name in sets else 0
        out.append(_rule("evidence", name, _holds("items", n, need, True), metric="items", value=n,
                         threshold=f">= {need}",
                         message=f"{name} set has {n} items ({sets[name].source if name in sets else 'missing'})"))
    return out


def _floor_rules(cfg: GateConfig, cand: dict[str, SetScores]) -> list[dict]:
    out = []
    for set_name, floors in cfg.rules.floors.items():
        for metric, floor in floors.items():
            better_up = METRICS[metric].higher_is_better
            value = cand[set_name].summary.get(metric, float("nan"))
            out.append(_rule("floor", set_name, _holds(metric, value, floor, better_up), metric=metric, value=value,
                             threshold=f"{'>=' if better_up else '<='} {floor}"))
    return out


def _zero_rules(cfg: GateConfig, cand: dict[str, SetScores]) -> list[dict]:
    out = []
    for metric, set_names in cfg.rules.zero_tolerance.items():
        for set_name in set_names:
            scores = cand[set_name].scores.get(metric)
            failures = float(scores.sum()) if scores is not None and len(scores) else float("nan")
            out.append(_rule("zero_tolerance", set_name, _holds(f"{metric}_failures", failures, 0, False),
                             metric=metric, value=failures, threshold="== 0 failing replies"))
    return out


def _interval_rule(kind, set_name, metric, baseline, cand, base, tol, cfg, idx=None, slice_=None) -> dict:
    """Whole sets must be shown no worse than the tolerance (interval low > -tol). A slice fails when it is
    shown worse than the tolerance (interval high < -tol): a slice of a few dozen items has an interval
    wider than the tolerance, so asking it to prove non-inferiority would refuse an equal candidate."""
    c, b = cand.scores.get(metric), base.scores.get(metric)
    if idx is not None and c is not None and b is not None:
        c, b = c[idx], b[idx]
    threshold = f"CI high >= -{tol}" if slice_ else f"CI low > -{tol}"
    fields = {"metric": metric, "baseline": baseline, "slice": slice_, "threshold": threshold}
    if c is None or b is None or len(c) == 0 or len(c) != len(b) or any(map(math.isnan, (*c, *b))):
        return _rule(kind, set_name, False, **fields, message="no paired scores to compare")
    ci = paired_interval(c, b, higher_is_better=METRICS[metric].higher_is_better, resamples=cfg.bootstrap.resamples,
                         confidence=cfg.bootstrap.confidence, seed=cfg.bootstrap.seed)
    passed = ci.high >= -tol if slice_ else ci.low > -tol
    return _rule(kind, set_name, passed, **fields, n=ci.n, value=float(c.mean()), baseline_value=float(b.mean()),
                 delta=ci.delta, ci=[ci.low, ci.high])


def _non_regression_rules(cfg, sets, cand, baselines) -> list[dict]:
    nr, out = cfg.rules.non_regression, []
    for base_name in nr.baselines if nr else []:
        if base_name not in baselines:
            continue
        for set_name in nr.sets:
            for metric in nr.tolerance:
                tol = nr.tolerance_for(metric, set_name)
                if tol is None or metric not in cfg.metrics.get(set_name, []):
                    continue
                out.append(_interval_rule("non_regression", set_name, metric, base_name, cand[set_name],
                                          baselines[base_name][set_name], tol, cfg))
    return out


def _slice_rules(cfg, sets, cand, baselines) -> list[dict]:
    sl, out = cfg.rules.slices, []
    for base_name in sl.baselines if sl else []:
        if base_name not in baselines:
            continue
        for set_name in sl.sets:
            for key in sl.by:
                values = sorted({it.slices[key] for it in sets[set_name].items if key in it.slices})
                for value in values:
                    idx = [i for i, it in enumerate(sets[set_name].items) if it.slices.get(key) == value]
                    if len(idx) < sl.min_size_for(set_name):
                        continue
                    for metric in (m for m in sl.metrics if m in cfg.metrics.get(set_name, [])):
                        out.append(_interval_rule("slice_non_regression", set_name, metric, base_name,
                                                  cand[set_name], baselines[base_name][set_name],
                                                  cfg.rules.non_regression.tolerance_for(metric, set_name), cfg, idx,
                                                  f"{key}={value}"))
    return out


def _infra_rule(cfg: GateConfig, infra: dict | None) -> list[dict]:
    if not cfg.rules.infra.enabled:
        return []
    if not infra:
        return [_rule("infra", "golden", False, metric="p95_latency_s", message="the infra check did not run")]
    ok = infra["answered"] == infra["asked"] and _holds("p95_latency_s", infra["p95_s"], infra["budget_s"], False)
    return [_rule("infra", "golden", ok, metric="p95_latency_s", value=infra["p95_s"],
                  threshold=f"<= {infra['budget_s']} s, all {infra['asked']} answered",
                  message=f"{infra['answered']}/{infra['asked']} golden prompts answered through {infra['path']}")]


def reason(rule: dict) -> str:
    """One line saying what a rule checked and, for a failure, by how much it missed."""
    where = f"{rule['set']}" + (f" [{rule['slice']}]" if rule.get("slice") else "")
    what = f"{rule['kind']} {rule.get('metric', '')}".strip()
    what += f" vs {rule['baseline']}" if rule.get("baseline") else ""
    if rule.get("ci"):
        nums = f"delta {rule['delta']:+.4f}, CI [{rule['ci'][0]:+.4f}, {rule['ci'][1]:+.4f}]"
    elif rule.get("value") is not None:
        nums = f"value {rule['value']:.4g}" if isinstance(rule["value"], float) else f"value {rule['value']}"
    else:
        nums = "no value"
    note = f"; {rule['message']}" if rule.get("message") else ""
    return f"{what} on {where}: {nums} (needs {rule.get('threshold', '')}){note}"


def decide(cfg: GateConfig, sets: dict[str, EvalSet], cand: dict[str, SetScores],
           baselines: dict[str, dict[str, SetScores]], infra: dict | None) -> dict:
    """Every rule of the gate file, each judged on its own set; passed only if every rule passed."""
    rules = evidence_rules(cfg, sets) + _floor_rules(cfg, cand) + _zero_rules(cfg, cand)
    rules += _non_regression_rules(cfg, sets, cand, baselines) + _slice_rules(cfg, sets, cand, baselines)
    rules += _infra_rule(cfg, infra)
    if cfg.rules.non_regression and "base" in cfg.rules.non_regression.baselines and "base" not in baselines:
        rules.append(_rule("non_regression", None, False, metric="*", baseline="base",
                           message="the base model was not scored"))
    return verdict(rules)


def verdict(rules: list[dict]) -> dict:
    failed = [r for r in rules if not r["passed"]]
    return {"passed": bool(rules) and not failed, "rules": rules,
            "reasons": [reason(r) for r in failed] or ["every rule passed"]}
