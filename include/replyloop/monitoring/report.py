"""The daily monitoring report: volume, down-vote rates (by model version, intent, channel), latency,
fallbacks and drift; plots and an HTML page logged to MLflow; and whether to ask for retraining."""

from __future__ import annotations

import html
import json
import logging
import math
import tempfile
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd

from replyloop.lake import Lake, lake_for
from replyloop.monitoring import drift as drift_mod
from replyloop.monitoring.traffic import curated_traffic, feedback_events, served_replies, window
from replyloop.settings import Settings

log = logging.getLogger(__name__)


def _rates(rated: pd.DataFrame, by: str) -> dict:
    grouped = rated.groupby(by)["down"].agg(["mean", "size"])
    return {str(k): {"down_rate": float(v["mean"]), "ratings": int(v["size"])} for k, v in grouped.iterrows()}


def summarize(replies: pd.DataFrame, feedback: pd.DataFrame, drift: dict, unanswered: pd.DataFrame) -> dict:
    rated = replies.merge(feedback, on="reply_id", how="inner")
    rated["down"] = rated["rating"] == "down"
    lat = replies["latency_ms"].dropna()
    return {
        "replies": int(len(replies)), "ratings": int(len(rated)), "corrections": int(rated["corrected"].sum()),
        "volume_by_day": {str(k): int(v) for k, v in replies.groupby("day").size().items()},
        "down_rate": float(rated["down"].mean()) if len(rated) else float("nan"),
        "down_by_version": _rates(rated, "model_version"), "down_by_intent": _rates(rated, "intent"),
        "down_by_channel": _rates(rated, "channel"),
        "latency_ms_p50": float(lat.quantile(0.5)) if len(lat) else float("nan"),
        "latency_ms_p95": float(lat.quantile(0.95)) if len(lat) else float("nan"),
        "fallbacks": int(replies["fallback"].sum()),
        "fallback_rate": float(replies["fallback"].mean()) if len(replies) else float("nan"),
        "fallbacks_by_reason": {str(k): int(v)
                                for k, v in replies["fallback_reason"].dropna().value_counts().items()},
        "unanswered": int(len(unanswered)),
        "unanswered_by_channel": {str(k): int(v) for k, v in unanswered.groupby("channel").size().items()},
        **drift,
    }


def retrain_reasons(summary: dict, settings: Settings) -> list[str]:
    reasons = []
    if summary["ratings"] >= settings.monitor_min_ratings and summary["down_rate"] > settings.monitor_downvote_threshold:
        reasons.append(f"down-vote rate {summary['down_rate']:.1%} over {summary['ratings']} ratings is above "
                       f"REPLYLOOP_MONITOR_DOWNVOTE_THRESHOLD={settings.monitor_downvote_threshold:.0%}")
    if not math.isnan(summary["drift"]) and summary["drift"] > settings.monitor_drift_threshold:
        reasons.append(f"drift {summary['drift']:.3f} of incoming customer messages from the training data is above "
                       f"REPLYLOOP_MONITOR_DRIFT_THRESHOLD={settings.monitor_drift_threshold}")
    return reasons


def figures(replies: pd.DataFrame, summary: dict) -> dict:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = {}
    fig, ax = plt.subplots(figsize=(6, 3))
    days = summary["volume_by_day"]
    ax.bar(list(days), list(days.values()), color="#4c72b0")
    ax.set_title("served replies per day")
    ax.tick_params(axis="x", rotation=30)
    fig.tight_layout()
    out["volume.png"] = fig
    fig, ax = plt.subplots(figsize=(6, 3))
    by = summary["down_by_version"]
    ax.bar([f"v{k}" for k in by], [v["down_rate"] for v in by.values()], color="#dd8452")
    ax.set_title("down-vote rate by model version")
    ax.set_ylim(0, 1)
    fig.tight_layout()
    out["down_by_version.png"] = fig
    fig, ax = plt.subplots(figsize=(6, 3))
    ax.hist(replies["latency_ms"].dropna(), bins=30, color="#55a868")
    ax.set_title("reply latency (ms)")
    fig.tight_layout()
    out["latency.png"] = fig
    return out


def _table(title: str, rates: dict) -> str:
    rows = "".join(f"<tr><td>{html.escape(k)}</td><td>{v['down_rate']:.1%}</td><td>{v['ratings']}</td></tr>"
                   for k, v in sorted(rates.items()))
    return (f"<h3>{html.escape(title)}</h3><table><tr><th></th><th>down-vote rate</th><th>ratings</th></tr>"
            f"{rows}</table>")


def _counts(by: dict) -> str:
    return "(" + ", ".join(f"{html.escape(k)} {v}" for k, v in sorted(by.items())) + ")" if by else ""


def html_report(summary: dict, reasons: list[str], days: list[str]) -> str:
    verdict = ("<p><b>Retraining requested:</b></p><ul>" + "".join(f"<li>{html.escape(r)}</li>" for r in reasons)
               + "</ul>") if reasons else "<p>No threshold passed; no retraining requested.</p>"
    head = (f"<p>{summary['replies']} replies served {days[0]} .. {days[-1]}, {summary['ratings']} rated "
            f"({summary['corrections']} corrected); down-vote rate {summary['down_rate']:.1%}; fallbacks "
            f"{summary['fallbacks']}; latency p50 {summary['latency_ms_p50']:.0f} ms, p95 "
            f"{summary['latency_ms_p95']:.0f} ms; drift {summary['drift']:.3f} (novel share "
            f"{summary['novel_share']:.1%}); {summary['unanswered']} conversations no agent answered "
            f"{_counts(summary['unanswered_by_channel'])}</p>")
    imgs = "".join(f'<img src="{n}" alt="{n}">' for n in ("volume.png", "down_by_version.png", "latency.png"))
    return (f"<html><head><meta charset='utf-8'><title>replyloop monitoring</title></head><body>"
            f"<h1>replyloop: production monitoring</h1>{verdict}{head}"
            f"{_table('by model version', summary['down_by_version'])}{_table('by intent', summary['down_by_intent'])}"
            f"{_table('by channel', summary['down_by_channel'])}{imgs}</body></html>")


def build(settings: Settings, lake: Lake, end: date, days: int) -> tuple[dict, list[str], pd.DataFrame, list[str]]:
    from replyloop.evaluation.embeddings import encode

    span = window(end, days)
    replies = served_replies(lake, span)
    today = max(end, datetime.now(UTC).date())  # ratings of these replies may have come in later
    feedback = feedback_events(lake, window(today, (today - date.fromisoformat(span[0])).days + 1))
    training, unanswered = curated_traffic(lake, span)
    served = encode(replies["customer_text"].tolist()) if len(replies) else None
    replies["intent"] = drift_mod.intents(served) if served is not None else []
    # incoming traffic: what customers asked the API, and what they asked that no agent answered
    parts = [served] if served is not None else []
    if len(unanswered):
        parts.append(encode(drift_mod.sample(unanswered["customer_text"].tolist())))
    training = drift_mod.sample(training)
    measured = drift_mod.drift(np.vstack(parts) if parts else [], encode(training) if training else [])
    summary = summarize(replies, feedback, measured, unanswered)
    return summary, retrain_reasons(summary, settings), replies, span


def run_monitor(settings: Settings, *, end: date | None = None, days: int | None = None) -> dict:
    """Build the report for the `days` up to `end` (default: yesterday, a closed day), log it to MLflow."""
    import mlflow

    from replyloop.tracking import configure

    end = end or (datetime.now(UTC).date() - timedelta(days=1))
    summary, reasons, replies, span = build(settings, lake_for(settings), end, days or settings.monitor_days)
    configure(settings)
    with mlflow.start_run(run_name=f"monitor-{end.isoformat()}", tags={"replyloop.kind": "monitoring"}) as run:
        mlflow.log_metrics({k: summary[k] for k in ("replies", "ratings", "down_rate", "fallback_rate",
                                                    "latency_ms_p50", "latency_ms_p95", "drift", "novel_share", "unanswered")
                            if not (isinstance(summary[k], float) and math.isnan(summary[k]))})
        with tempfile.TemporaryDirectory() as tmp:
            import matplotlib.pyplot as plt

            for name, fig in figures(replies, summary).items():
                fig.savefig(Path(tmp) / name, dpi=90)
                plt.close(fig)
            (Path(tmp) / "report.html").write_text(html_report(summary, reasons, span), encoding="utf-8")
            (Path(tmp) / "summary.json").write_text(json.dumps({**summary, "retrain_reasons": reasons}, indent=1))
            mlflow.log_artifacts(tmp, artifact_path="monitoring")
    log.info("monitoring %s..%s: %d replies, retrain=%s", span[0], span[-1], summary["replies"], bool(reasons))
    return {"run_id": run.info.run_id, "retrain": bool(reasons), "reasons": reasons, "days": span,
            "summary": {k: v for k, v in summary.items() if not isinstance(v, dict)}}
