"""
### erase_subjects

Erases people (platform user ids, as `messages[].author_id` in the landing files) or conversations on
request (see `docs/privacy.md`). Triggered by hand or through the REST API; consumes nothing.

1. **record**: appends the request to the erasure log `privacy/erasures/` (ids, who, when, why; never
   message text) and logs which registered model versions were trained on the subjects' data.
2. **apply**: writes the current snapshot again without them (Asset `replyloop.curated_snapshot`, so a
   model can be retrained without them); every later ingestion, backfill and replay keeps them out.
3. **purge** (Param `purge`): deletes older snapshots and rewrites the landing and quarantine files that
   still hold them; refused when the champion was trained on such a snapshot, unless `force`.

**Params**: `authors`, `conversations` (lists of ids, each once), `requested_by` (required), `reason`,
`purge`, `force`, `lake_uri`. The run waits while an ingestion holds the lake (`REPLYLOOP_LAKE_LOCK_WAIT_SECONDS`).
"""

from __future__ import annotations

import pendulum
from airflow.sdk import Param, dag, task

from common.assets import CURATED_SNAPSHOT, DEFAULT_ARGS, TAGS

IDS = {"type": "string", "minLength": 1, "maxLength": 200}


@dag(
    dag_id="erase_subjects",
    schedule=None,
    start_date=pendulum.datetime(2026, 11, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    doc_md=__doc__,
    default_args=DEFAULT_ARGS,
    tags=[*TAGS, "data-quality"],
    params={
        "authors": Param([], type="array", items=IDS, uniqueItems=True, title="Author ids",
                         description="Platform user ids (messages[].author_id as landed)"),
        "conversations": Param([], type="array", items=IDS, uniqueItems=True, title="Conversation ids"),
        "requested_by": Param("", type="string", minLength=1, title="Requested by",
                              description="Who asked for the erasure (a person or a ticket)"),
        "reason": Param(None, type=["null", "string"], title="Reason (no personal data)"),
        "purge": Param(False, type="boolean", title="Also delete older snapshots and rewrite landing files"),
        "force": Param(False, type="boolean", title="Purge even the champion's training snapshot"),
        "lake_uri": Param(None, type=["null", "string"], title="Lake",
                          description="Local folder or s3://bucket/prefix; empty uses REPLYLOOP_LAKE_URI"),
    },
)
def erase_subjects():
    @task
    def record(params=None, run_id=None) -> dict:
        from common.runtime import settings_for
        from replyloop.privacy.request import erase_subjects as erase, report_lines

        result = erase(settings_for(params), authors=params["authors"], conversations=params["conversations"],
                       requested_by=f"{params['requested_by']} (airflow run {run_id})", reason=params.get("reason"),
                       apply_now=False, request_id=_request_id(run_id))
        print("\n".join(report_lines(result)))
        req = result["request"]
        return {"request_id": req["request_id"], "unmatched": req["unmatched"], "model_versions": req["model_versions"]}

    @task(outlets=[CURATED_SNAPSHOT])
    def apply(params=None, outlet_events=None) -> dict:
        from airflow.sdk.exceptions import AirflowSkipException

        from common.runtime import settings_for
        from replyloop.privacy.request import apply as apply_erasures

        manifest = apply_erasures(settings_for(params))
        if manifest["status"] == "no_new_data":
            raise AirflowSkipException(f"snapshot {manifest.get('snapshot_id')} holds nothing of the subjects")
        outlet_events[CURATED_SNAPSHOT].extra = {"snapshot_id": manifest["snapshot_id"],
                                                 "counts": {k: manifest["counts"][k] for k in
                                                            ("raw", "curated", "quarantined", "duplicates")}}
        return {"snapshot_id": manifest["snapshot_id"], "rewritten": manifest["erasure"]["rewritten"]}

    @task(trigger_rule="none_failed")
    def purge(params=None) -> dict:
        from airflow.sdk.exceptions import AirflowSkipException

        from common.runtime import settings_for
        from replyloop.privacy.purge import purge as run_purge

        if not params.get("purge"):
            raise AirflowSkipException("purge not requested (Param purge)")
        return run_purge(settings_for(params), force=bool(params.get("force")))

    record() >> apply() >> purge()


def _request_id(run_id: str) -> str:
    """One request per DAG run, so a retried task does not record it twice."""
    import hashlib

    return hashlib.sha256(run_id.encode()).hexdigest()[:16]


erase_subjects()
