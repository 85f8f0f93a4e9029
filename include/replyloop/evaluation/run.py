"""Evaluate a candidate version against the baseline and promote it only if every gate rule passes.

The candidate and the baseline (the champion; the base model on a cold start) answer the same prompts:
the held-out split of the candidate's training snapshot, the shipped golden set and the safety prompts.
Metrics come from the shipped `evaluate` modules plus teacher-forced held-out perplexity. The decision
is written on the version (tags), in an MLflow run (metrics, HTML report, plot, sample table), and the
aliases move only when the gate passes.
"""

from __future__ import annotations

import logging
import math
import time

from replyloop import registry, resources
from replyloop.evaluation import metrics
from replyloop.evaluation.gate import GateConfig, decide
from replyloop.ingest.pipeline import read_snapshot
from replyloop.lake import lake_for
from replyloop.modeling import ReplyGenerator, base_model_by_hash, load_base
from replyloop.registry import load_version  # noqa: F401  (was defined here)
from replyloop.reports import comparison_png, gate_report_html
from replyloop.settings import Settings, get_settings
from replyloop.tracking import code_version, configure
from replyloop.training.examples import build_examples, conversations, prompts_and_references
from replyloop.training.train import mean_loss

log = logging.getLogger(__name__)


class EvaluationError(RuntimeError):
    pass


def _score(gen: ReplyGenerator, sets: dict[str, list[tuple]], eval_examples) -> tuple[dict, dict[str, list[str]]]:
    started = time.monotonic()
    outputs = {name: gen.reply([p for p, _ in items]) for name, items in sets.items()}
    prompts = sum(len(v) for v in sets.values())
    log.info("generated %d replies in %.0fs", prompts, time.monotonic() - started)
    preds = outputs["heldout"] + outputs["golden"]
    refs = [r for _, r in sets["heldout"]] + [r for _, r in sets["golden"]]
    m = metrics.quality(preds, refs)
    golden = metrics.quality(outputs["golden"], [r for _, r in sets["golden"]])
    m.update({"golden_rougeL": golden["rougeL"], "golden_chrf": golden["chrf"]})
    loss = mean_loss(gen.model, eval_examples, gen.tok.pad_token_id, 8) if eval_examples else float("nan")
    m["perplexity"] = math.exp(min(loss, 50)) if eval_examples else float("nan")
    all_replies = [r for v in outputs.values() for r in v]
    m["pii_leak_rate"] = metrics.pii_leaks(all_replies)["leak_rate"]
    m["safety_violations"] = metrics.safety(outputs["safety"])["violations"]
    m["n_examples"] = len(preds)
    return m, outputs


def evaluate_candidate(settings: Settings | None = None, *, version: str | None = None, promote: bool = True,
                       max_prompts: int = 16) -> dict:
    """Run the gate for `version` (default: the newest version without a decision)."""
    import mlflow

    settings = settings or get_settings()
    version = str(version) if version else registry.latest_unevaluated(settings)
    if version is None:
        raise EvaluationError(f"no candidate: every version of {settings.model_name} already has a gate decision; "
                              "train a new one or pass a version")
    c = registry.client(settings)
    mv = c.get_model_version(settings.model_name, version)
    tags = mv.tags or {}
    champion = registry.alias_version(settings, registry.CHAMPION)
    baseline_name = f"champion v{champion}" if champion and champion != version else "base model"

    snap_id, messages, feedback = read_snapshot(lake_for(settings), tags.get("replyloop.snapshot_id"))
    eval_convs, _ = conversations(messages, feedback, "eval")
    sets = {
        "heldout": prompts_and_references(eval_convs, max_prompts),
        "golden": [(g["prompt"], g["reference"]) for g in resources.golden_set()],
        "safety": [(s["prompt"], None) for s in resources.safety_prompts()],
    }
    log.info("evaluating v%s against %s on %d held-out, %d golden and %d safety prompts (snapshot %s)", version,
             baseline_name, len(sets["heldout"]), len(sets["golden"]), len(sets["safety"]), snap_id)

    candidate = load_version(settings, version)
    eval_ex = build_examples(candidate.tok, settings.rendered_system_prompt(), eval_convs, 256)[:32]
    cand_m, cand_out = _score(candidate, sets, eval_ex)
    del candidate
    if baseline_name == "base model":
        model, tok = load_base(base_model_by_hash(settings, tags["replyloop.base_model_sha"]))
        baseline = ReplyGenerator(model, tok, system_prompt=settings.rendered_system_prompt(),
                                  max_new_tokens=settings.max_new_tokens)
    else:
        baseline = load_version(settings, champion)
    base_m, base_out = _score(baseline, sets, eval_ex)
    del baseline

    gate_cfg = GateConfig.load()
    decision = decide(cand_m, base_m, gate_cfg)
    decision.update({"candidate": version, "baseline": baseline_name,
                     "metrics": {f"candidate v{version}": cand_m, baseline_name: base_m}})
    replies = []  # every prompt with both answers: the full table goes to MLflow, a few rows to the report
    for name, items in sets.items():
        for i, (prompt, ref) in enumerate(items):
            replies.append({"set": name, "prompt": prompt if isinstance(prompt, str) else prompt[-1]["text"],
                            "reference": ref, f"candidate v{version}": cand_out[name][i],
                            baseline_name: base_out[name][i]})
    samples = [r for name in sets for r in [x for x in replies if x["set"] == name][:6]]

    configure(settings)
    with mlflow.start_run(run_name=f"gate-v{version}") as run:
        mlflow.set_tags({"replyloop.stage": "evaluate", "replyloop.candidate_version": version,
                         "replyloop.baseline": baseline_name, "replyloop.snapshot_id": snap_id,
                         "replyloop.code_version": code_version(),
                         "replyloop.gate": "passed" if decision["passed"] else "failed"})
        mlflow.log_metrics({f"candidate_{k}": float(v) for k, v in cand_m.items()})
        mlflow.log_metrics({f"baseline_{k}": float(v) for k, v in base_m.items()})
        mlflow.log_params({f"gate_{k}": v for k, v in vars(gate_cfg).items()})
        mlflow.log_dict(decision, "gate/decision.json")
        mlflow.log_text(gate_report_html(decision, samples), "gate/report.html")
        mlflow.log_figure(comparison_png(decision["metrics"], ["rougeL", "chrf", "perplexity"]), "gate/comparison.png")
        mlflow.log_table({k: [r.get(k) for r in replies] for k in replies[0]}, "gate/replies.json")
        eval_run = run.info.run_id

    status = "passed" if decision["passed"] else "failed"
    c.set_model_version_tag(settings.model_name, version, registry.GATE_TAG, status)
    c.set_model_version_tag(settings.model_name, version, "replyloop.gate.reasons", "; ".join(decision["reasons"]))
    c.set_model_version_tag(settings.model_name, version, "replyloop.gate.baseline", baseline_name)
    c.set_model_version_tag(settings.model_name, version, "replyloop.gate.run_id", eval_run)
    for key in ("rougeL", "chrf", "perplexity"):
        c.set_model_version_tag(settings.model_name, version, f"replyloop.metric.{key}", f"{cand_m[key]:.4f}")

    promoted = None
    if decision["passed"]:
        c.set_registered_model_alias(settings.model_name, registry.CHALLENGER, version)
        if promote:
            registry.promote(settings, version, reason=f"gate passed against {baseline_name}", by="gate")
            promoted = version
    result = {"version": version, "baseline": baseline_name, "passed": decision["passed"],
              "reasons": decision["reasons"], "promoted": promoted, "eval_run_id": eval_run,
              "champion": registry.alias_version(settings, registry.CHAMPION),
              "candidate_metrics": cand_m, "baseline_metrics": base_m,
              "sample": {"prompt": samples[0]["prompt"], "reply": samples[0][f"candidate v{version}"]} if samples else None}
    after = (f"champion is now v{promoted}" if promoted else
             f"challenger is v{version}; promotion is left to the caller" if decision["passed"] and not promote else
             f"champion stays {'v' + str(result['champion']) if result['champion'] else 'unset'}")
    log.info("gate for v%s: %s (%s); %s", version, status.upper(), "; ".join(decision["reasons"]), after)
    return result
