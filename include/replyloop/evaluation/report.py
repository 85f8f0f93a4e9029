"""What the gate leaves behind: a plain-text table for the task log, and an MLflow run with the metrics
(per set and slice), the decision, an HTML report with the worst examples side by side, and plots."""

from __future__ import annotations

import math

import numpy as np
from tabulate import tabulate

from replyloop.evaluation.bootstrap import mean_interval
from replyloop.evaluation.scoring import METRICS, SetScores
from replyloop.evaluation.sets import EvalSet

RULE_HEADER = ["rule", "set", "slice", "metric", "vs", "candidate", "baseline", "delta", "interval", "needs",
               "verdict"]


def _fmt(x) -> str:
    if x is None:
        return ""
    if isinstance(x, float):
        return "nan" if math.isnan(x) else f"{x:.4f}"
    return str(x)


def _slice_cell(values: np.ndarray, bootstrap) -> str:
    """A slice's mean per-reply score with its bootstrap interval (`bootstrap`: the gate file's settings)."""
    if bootstrap is None or len(values) < 2 or np.isnan(values).any():
        return _fmt(float(np.mean(values)))
    low, high = mean_interval(values, resamples=bootstrap.resamples, confidence=bootstrap.confidence,
                              seed=bootstrap.seed)
    return f"{_fmt(float(np.mean(values)))} [{low:.4f}, {high:.4f}]"


def metric_rows(sets: dict[str, EvalSet], models: dict[str, dict[str, SetScores]], slice_keys: list[str],
                bootstrap=None):
    """(header, rows): every metric of every set, and of every slice, for every model. A slice's cell is the
    mean per-reply score, with its bootstrap interval when `bootstrap` (the gate file's settings) is given."""
    header = ["set", "slice", "n", "metric", *models]
    rows = []
    for set_name, es in sets.items():
        groups = [("all", list(range(len(es.items))))]
        for key in slice_keys:
            for value in sorted({it.slices[key] for it in es.items if key in it.slices}):
                groups.append((f"{key}={value}", [i for i, it in enumerate(es.items) if it.slices.get(key) == value]))
        first = next(iter(models.values()))
        for label, idx in groups:
            for metric in first.get(set_name, SetScores([])).scores:
                values = []
                for scored in models.values():
                    s = scored.get(set_name)
                    if s is None or metric not in s.scores:
                        values.append("")
                    elif label == "all":
                        values.append(_fmt(s.summary[metric]))
                    else:
                        values.append(_slice_cell(np.asarray(s.scores[metric])[idx], bootstrap) if idx else "")
                rows.append([set_name, label, len(idx), metric, *values])
    return header, rows


def rule_rows(rules: list[dict]) -> list[list]:
    return [[r["kind"], r.get("set") or "", r.get("slice") or "", r.get("metric", ""), r.get("baseline") or "",
             _fmt(r.get("value")), _fmt(r.get("baseline_value")), _fmt(r.get("delta")),
             f"[{r['ci'][0]:+.4f}, {r['ci'][1]:+.4f}]" if r.get("ci") else r.get("message", ""),
             r.get("threshold", ""), "pass" if r["passed"] else "FAIL"] for r in rules]


SLICES_IN_LOG = ("expected_behaviour",)  # metrics whose slices (safety set: category, expected) the log shows


def log_table(decision: dict, header: list[str], rows: list[list]) -> str:
    """The text a data engineer reads in the Airflow task log: every metric per set, then the slices of the
    red-team set's expected behaviour (per category and per expected behaviour, with intervals), then the rules."""
    verdict = "PASSED" if decision["passed"] else "FAILED"
    top = [r for r in rows if r[1] == "all"]
    sliced = [r for r in rows if r[1] != "all" and r[3] in SLICES_IN_LOG]
    return "\n".join([
        f"gate for v{decision['candidate']}: {verdict} (baselines: "
        + ", ".join(f"{k} = {v}" for k, v in decision["baselines"].items()) + ")",
        tabulate(top, headers=header, tablefmt="simple"), "",
        *([tabulate(sliced, headers=header, tablefmt="simple"), ""] if sliced else []),
        tabulate(rule_rows(decision["rules"]), headers=RULE_HEADER, tablefmt="simple"), "",
        *(f"  - {r}" for r in decision["reasons"])])


def worst_examples(sets: dict[str, EvalSet], models: dict[str, dict[str, SetScores]], candidate: str,
                   per_set: int = 8) -> list[dict]:
    """Per set, the replies where the candidate did worst against the best baseline on the set's first
    quality metric, plus every candidate reply that leaked PII or was flagged unsafe."""
    out = []
    cand = models[candidate]
    for set_name, es in sets.items():
        c = cand.get(set_name)
        if c is None or not es.items:
            continue
        flagged = {i for m in ("pii_leak", "safety") if m in c.scores for i in np.flatnonzero(c.scores[m] > 0)}
        flagged |= set(_behaviour_lost(models, candidate, set_name))
        primary = next((m for m in c.scores if METRICS[m].needs_reference and METRICS[m].higher_is_better), None)
        ranked = []
        if primary and len(models) > 1:
            best = np.max([s[set_name].scores[primary] for name, s in models.items() if name != candidate], axis=0)
            ranked = [int(i) for i in np.argsort(c.scores[primary] - best)[:per_set]]
        for i in sorted(flagged) + [i for i in ranked if i not in flagged]:
            it = es.items[i]
            why = [f"{m}: {c.details[m][i]}" for m in ("pii_leak", "safety") if m in c.details and c.scores[m][i] > 0]
            if "expected_behaviour" in c.scores and c.scores["expected_behaviour"][i] == 0:
                why.append(f"expected behaviour not shown: {c.details['expected_behaviour'][i]}")
            if primary:
                why.append(f"{primary}: " + ", ".join(f"{n} {s[set_name].scores[primary][i]:.3f}"
                                                      for n, s in models.items()))
            out.append({"set": set_name, "id": it.id, "prompt": " / ".join(m["text"] for m in it.messages),
                        "reference": it.reference, "replies": {n: s[set_name].replies[i] for n, s in models.items()},
                        "why": "; ".join(why)})
    return out


def _behaviour_lost(models, candidate: str, set_name: str) -> list[int]:
    """Items whose candidate reply misses its expected behaviour while a baseline's reply shows it."""
    c = models[candidate].get(set_name)
    others = [s[set_name].scores["expected_behaviour"] for n, s in models.items()
              if n != candidate and set_name in s and "expected_behaviour" in s[set_name].scores]
    if c is None or "expected_behaviour" not in c.scores or not others:
        return []
    return [int(i) for i in np.flatnonzero((c.scores["expected_behaviour"] == 0) & (np.max(others, axis=0) > 0))]


def log_run(settings, decision: dict, cfg, sets, models: dict[str, dict[str, SetScores]], candidate: str,
            slice_keys: list[str]) -> str:
    """An MLflow run with everything an ML lead needs to see why; returns its run id."""
    import mlflow

    from replyloop.reports import comparison_png, gate_report_html, intervals_png
    from replyloop.tracking import code_version, configure

    header, rows = metric_rows(sets, models, slice_keys, cfg.bootstrap)
    configure(settings)
    with mlflow.start_run(run_name=f"gate-v{decision['candidate']}") as run:
        mlflow.set_tags({"replyloop.stage": "evaluate", "replyloop.candidate_version": decision["candidate"],
                         "replyloop.code_version": code_version(),
                         "replyloop.decision": "passed" if decision["passed"] else "failed"})
        mlflow.log_params({"gate_file": cfg.path, "gate_sha256": cfg.sha256, "engine": decision.get("engine"), **{
            f"set_{k}_sha256": v["sha256"] for k, v in decision["sets"].items()}, **{
            f"set_{k}_n": v["n"] for k, v in decision["sets"].items()}, **{
            f"baseline_{k}": v for k, v in decision["baselines"].items()}})
        for model, per_set in models.items():
            role = "candidate" if model == candidate else model.split()[0]
            mlflow.log_metrics({f"{role}.{s}.{m}": v for s, sc in per_set.items() for m, v in sc.summary.items()
                                if not math.isnan(v)})
        mlflow.log_dict(decision, "gate/decision.json")
        mlflow.log_text(log_table(decision, header, rows), "gate/summary.txt")
        summary = {n: {s: sc.summary for s, sc in per.items()} for n, per in models.items()}
        figures = [comparison_png(summary, ["token_f1", "chrf", "semantic_similarity", "safety"])]
        if any(r.get("ci") for r in decision["rules"]):
            figures.append(intervals_png(decision["rules"]))
        for k, fig in enumerate(figures):
            mlflow.log_figure(fig, f"gate/plot_{k}.png")
        examples = worst_examples(sets, models, candidate)
        mlflow.log_text(gate_report_html(decision, rows, header, rule_rows(decision["rules"]), RULE_HEADER, examples,
                                         figures), "gate/report.html")
        table = [{"set": s, "id": it.id, "prompt": it.prompt_text, "reference": it.reference or "",
                  **{n: per[s].replies[i] for n, per in models.items()}}
                 for s, es in sets.items() if s in models[candidate] for i, it in enumerate(es.items)]
        if table:
            mlflow.log_table({k: [r[k] for r in table] for k in table[0]}, "gate/replies.json")
        return run.info.run_id
