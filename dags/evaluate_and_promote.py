"""
### evaluate_and_promote

Runs when `finetune_lora` registers a candidate (Asset `replyloop.candidate_model`; the event's
`extra.version` names the version to judge) or on demand (Param `version`, default: the newest version
without a decision). The candidate, the `champion` and the base model answer the same held-out, golden and
safety prompts; the **gate** (`resources/gate.yaml`, see docs/gate.md) judges every rule per evaluation
set with paired bootstrap intervals. The task log prints a table of every metric, candidate against
baselines, and each rule's verdict; the decision, rules and baselines are recorded on the version and an
HTML report in MLflow. A passing version becomes `challenger`; with `auto_promote` it becomes `champion`
(Asset `replyloop.champion_model`), after an ML lead's approval in **Browse → Required Actions** when
`require_approval` is on. A rejection or a timeout leaves `champion` where it was.

**Params**: `version`, `auto_promote`, `require_approval` (default: the `REPLYLOOP_REQUIRE_APPROVAL`
setting).
"""

from __future__ import annotations

from datetime import timedelta

import pendulum
from airflow.sdk import Param, dag, task

from common.approval import ANSWER_KEY, RecordedApprovalOperator
from common.assets import CANDIDATE_MODEL, CHAMPION_MODEL, DEFAULT_ARGS, TAGS
from replyloop.settings import get_settings


def _who(responded_by) -> str:
    if isinstance(responded_by, dict):
        return str(responded_by.get("name") or responded_by.get("id") or "unknown")
    return str(responded_by) if responded_by else "nobody (timed out)"


@dag(
    dag_id="evaluate_and_promote",
    schedule=[CANDIDATE_MODEL],
    start_date=pendulum.datetime(2026, 11, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    doc_md=__doc__,
    default_args=DEFAULT_ARGS,
    tags=[*TAGS, "evaluation", "registry"],
    params={
        "version": Param(None, type=["null", "string", "integer"], title="Model version to evaluate"),
        "auto_promote": Param(True, type="boolean", title="Move champion when the gate passes"),
        "require_approval": Param(None, type=["null", "boolean"], title="Wait for an ML lead's approval "
                                  "(default: REPLYLOOP_REQUIRE_APPROVAL)"),
    },
)
def evaluate_and_promote():
    queue = get_settings().eval_queue  # the infra check times the candidate on the worker that runs this task

    @task(**({"queue": queue} if queue else {}))
    def evaluate(params=None, triggering_asset_events=None) -> dict:
        from common.runtime import quiet_libraries, settings_for
        from replyloop.evaluation.run import evaluate_candidate, version_to_evaluate

        quiet_libraries()
        # scheduled on replyloop.candidate_model only, so every triggering event names a candidate
        extras = [dict(e.extra or {}) for events in (triggering_asset_events or {}).values() for e in events]
        version = version_to_evaluate(extras, params.get("version"))
        return evaluate_candidate(settings_for(params), version=version, promote=False)

    @task.branch
    def route(result: dict, params=None) -> list[str]:
        from common.runtime import settings_for

        if not result["passed"] or not params["auto_promote"]:
            print(f"v{result['version']}: {'passed; auto_promote is off' if result['passed'] else 'failed'}; "
                  f"champion stays v{result['champion']}")
            return []
        required = params.get("require_approval")
        required = settings_for(params).require_approval if required is None else required
        return ["approval"] if required else ["promote"]

    approval = RecordedApprovalOperator(
        task_id="approval",
        subject="Promote replyloop version {{ ti.xcom_pull(task_ids='evaluate')['version'] }} to champion?",
        body="The gate passed against {{ ti.xcom_pull(task_ids='evaluate')['baselines'] }}. Read the report in "
             "MLflow run {{ ti.xcom_pull(task_ids='evaluate')['eval_run_id'] }} (gate/report.html).",
        defaults="Reject",
        params={"comment": Param("", type="string", title="Why (recorded on the version)")},
        response_timeout=timedelta(hours=get_settings().approval_timeout_hours),
    )

    @task(outlets=[CHAMPION_MODEL])
    def promote(result: dict, params=None, outlet_events=None) -> dict:
        from common.runtime import settings_for
        from replyloop import registry

        moved = registry.promote(settings_for(params), result["version"], by="gate",
                                 reason="gate passed against " + ", ".join(
                                     f"{k} {v}" for k, v in result["baselines"].items() if v))
        outlet_events[CHAMPION_MODEL].extra = {"version": moved["champion"], "previous": moved["previous"]}
        return moved

    @task(outlets=[CHAMPION_MODEL])
    def promote_approved(result: dict, params=None, outlet_events=None, ti=None) -> dict:
        from common.runtime import settings_for
        from replyloop import registry

        answer = ti.xcom_pull(task_ids="approval", key=ANSWER_KEY) or {}
        comment = (answer.get("params_input") or {}).get("comment") or "approved"
        moved = registry.promote(settings_for(params), result["version"], by=_who(answer.get("responded_by_user")),
                                 reason=f"approved in Airflow: {comment}")
        outlet_events[CHAMPION_MODEL].extra = {"version": moved["champion"], "previous": moved["previous"]}
        return moved

    @task(trigger_rule="all_done")
    def record_approval(result: dict, params=None, ti=None) -> dict:
        """Approve, reject or timeout: the outcome, approver and comment go on the version."""
        from common.runtime import settings_for
        from replyloop import registry

        answer = ti.xcom_pull(task_ids="approval", key=ANSWER_KEY)
        if answer is None:  # the approval step did not run (gate failed, or no approval required)
            return {}
        by = answer.get("responded_by_user")
        outcome = "approved" if answer.get("chosen_options") == ["Approve"] else "rejected" if by else "timed_out"
        who = _who(by)
        comment = (answer.get("params_input") or {}).get("comment") or ""
        registry.record_approval(settings_for(params), result["version"], outcome=outcome, by=who,
                                 comment=comment)
        print(f"v{result['version']}: {outcome} by {who}: {comment}")
        return {"outcome": outcome, "by": who}

    result = evaluate()
    routed = route(result)
    routed >> [approval, promote(result)]
    approved = promote_approved(result)
    approval >> approved >> record_approval(result)


evaluate_and_promote()
