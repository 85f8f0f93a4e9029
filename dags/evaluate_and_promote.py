"""
### evaluate_and_promote

Runs when a candidate version is registered (Asset `replyloop.candidate_model`) or on demand. The
candidate and the baseline (the `champion`, or the base model on a cold start) answer the held-out,
golden and safety prompts; metrics come from the `evaluate` modules shipped in the repo. The **gate**
(`resources/gate.yaml`) decides; the decision, the reasons and an HTML report are recorded on the
version and in MLflow. Only a version that passes every rule becomes `challenger` and, with
`auto_promote`, `champion` (Asset `replyloop.champion_model`; the server follows the alias).

**Params**: `version` (default: the newest version without a decision), `auto_promote`.
"""

from __future__ import annotations

import pendulum
from airflow.sdk import Param, dag, task

from common.assets import CANDIDATE_MODEL, CHAMPION_MODEL, DEFAULT_ARGS, TAGS


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
        "max_prompts": Param(16, type="integer", minimum=1, maximum=1000, title="Held-out prompts per model"),
    },
)
def evaluate_and_promote():
    @task
    def evaluate(params=None) -> dict:
        from common.runtime import quiet_libraries, settings_for
        from replyloop.evaluation.run import evaluate_candidate

        quiet_libraries()
        version = params.get("version")
        result = evaluate_candidate(settings_for(params), version=str(version) if version else None,
                                    promote=False, max_prompts=params["max_prompts"])
        for reason in result["reasons"]:
            print(f"gate v{result['version']}: {reason}")
        return result

    @task(outlets=[CHAMPION_MODEL])
    def promote(result: dict, params=None, outlet_events=None) -> dict:
        from airflow.sdk.exceptions import AirflowSkipException

        from common.runtime import settings_for
        from replyloop import registry

        if not result["passed"]:
            raise AirflowSkipException(f"v{result['version']} failed the gate: {'; '.join(result['reasons'])}")
        if not params["auto_promote"]:
            raise AirflowSkipException(f"v{result['version']} passed; auto_promote is off (challenger is set)")
        moved = registry.promote(settings_for(params), result["version"],
                                 reason=f"gate passed against {result['baseline']}")
        outlet_events[CHAMPION_MODEL].extra = moved
        return moved

    promote(evaluate())


evaluate_and_promote()
