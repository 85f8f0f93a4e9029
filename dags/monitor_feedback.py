"""Daily production monitoring of the served assistant.

Reads the replies the API served (`raw/replies`) and their feedback (`raw/feedback`) for the last
`days` closed days: volume, down-vote rate by model version, intent and channel, latency, fallbacks,
and drift of incoming customer messages from the training data (MiniLM embeddings). Plots and an HTML
report go to MLflow (experiment `replyloop`, run `monitor-<day>`). When the down-vote rate or the drift
passes its threshold, it updates the Asset `replyloop.retrain_request` (which can trigger fine-tuning)
and notifies through the connection REPLYLOOP_MONITOR_NOTIFY_CONN_ID (default `replyloop_alerts`;
SMTP or webhook).
"""

from __future__ import annotations

import pendulum
from airflow.sdk import Param, dag, task

from common.assets import DEFAULT_ARGS, RETRAIN_REQUEST, TAGS
from common.notifiers import AlertNotifier


@dag(
    dag_id="monitor_feedback",
    schedule="@daily",
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    doc_md=__doc__,
    default_args=DEFAULT_ARGS,
    tags=[*TAGS, "monitoring"],
    params={"days": Param(7, type="integer", minimum=1, maximum=90, title="Days of traffic to read"),
            "end_day": Param("", type="string", title="Last day (YYYY-MM-DD); empty = yesterday")},
)
def monitor_feedback():
    @task
    def report(params=None) -> dict:
        from datetime import date

        from common.runtime import settings_for
        from replyloop.monitoring.report import run_monitor

        end = date.fromisoformat(params["end_day"]) if params.get("end_day") else None
        return run_monitor(settings_for(params), end=end, days=int(params["days"]))

    @task.short_circuit
    def needs_retraining(result: dict) -> bool:
        return result["retrain"]

    @task(outlets=[RETRAIN_REQUEST],
          on_success_callback=[AlertNotifier(message="replyloop monitoring requested retraining: "
                                                     "{{ ti.xcom_pull(task_ids='report')['reasons'] | join('; ') }}")])
    def request_retraining(result: dict, outlet_events=None) -> None:
        outlet_events[RETRAIN_REQUEST].extra = {"reasons": result["reasons"], "monitor_run_id": result["run_id"],
                                                "days": result["days"]}

    result = report()
    needs_retraining(result) >> request_retraining(result)


monitor_feedback()
