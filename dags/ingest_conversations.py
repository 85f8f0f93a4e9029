"""
### ingest_conversations

Reads the landing partitions of the lake (`raw/conversations`, `raw/twcs`, `raw/feedback`, by day) that
were not ingested yet, normalises them to the data contract, redacts PII, de-duplicates, validates them
with Great Expectations and writes a new immutable **curated snapshot**; bad records go to
`quarantine/dt=.../*.jsonl` with a reason code. Updates the Asset `replyloop.curated_snapshot`.

Erasure requests (`replyloop erase`, DAG `erase_subjects`) are applied on the way: their subjects never
reach the snapshot. Then **cleanup** deletes landing, quarantine and snapshot data past its retention
(`REPLYLOOP_*_RETENTION_DAYS`) that nothing refers to any more, and lists what it deleted.

**Params**: `date` re-reads one day (backfill; idempotent); `lake_uri` reads another lake.
**Fails** (and keeps the current snapshot) on a missing requested day, a schema change, a volume jump or a
quarantine rate above `REPLYLOOP_MAX_QUARANTINE_RATE`; the message says which file or partition.
"""

from __future__ import annotations

import pendulum
from airflow.sdk import Param, dag, task

from common.assets import CURATED_SNAPSHOT, DEFAULT_ARGS, TAGS


@dag(
    dag_id="ingest_conversations",
    schedule="0 2 * * *",
    start_date=pendulum.datetime(2026, 11, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    doc_md=__doc__,
    default_args=DEFAULT_ARGS,
    tags=[*TAGS, "ingest", "data-quality"],
    params={
        "date": Param(None, type=["null", "string"], format="date", title="Day to (re-)ingest",
                      description="YYYY-MM-DD; empty reads every partition not ingested yet"),
        "lake_uri": Param(None, type=["null", "string"], title="Lake",
                          description="Local folder or s3://bucket/prefix; empty uses REPLYLOOP_LAKE_URI"),
    },
)
def ingest_conversations():
    @task(outlets=[CURATED_SNAPSHOT])
    def ingest(params=None, outlet_events=None) -> dict:
        from airflow.sdk.exceptions import AirflowSkipException

        from common.runtime import quiet_libraries, settings_for
        from replyloop.ingest.pipeline import run_ingest

        quiet_libraries()
        manifest = run_ingest(settings_for(params), date=params.get("date"))
        if manifest["status"] == "no_new_data":
            raise AirflowSkipException(f"no new landing partitions; snapshot stays {manifest.get('snapshot_id')}")
        outlet_events[CURATED_SNAPSHOT].extra = {"snapshot_id": manifest["snapshot_id"],
                                                 "counts": {k: manifest["counts"][k] for k in
                                                            ("raw", "curated", "quarantined", "duplicates")}}
        return {"snapshot_id": manifest["snapshot_id"], "counts": manifest["counts"],
                "totals": manifest["totals"], "data_docs": (manifest.get("validation") or {}).get("data_docs"),
                "quarantine": manifest["quarantine"]}

    @task(trigger_rule="none_failed")
    def cleanup(params=None) -> dict:
        from common.runtime import settings_for
        from replyloop.privacy.retention import cleanup as run_cleanup

        report = run_cleanup(settings_for(params))
        for what, keys in report["deleted"].items():
            print(f"deleted {len(keys)} {what} folder(s): {', '.join(keys) or '-'}")
        if report["purge_candidates"]:
            print(f"snapshots kept that predate an erasure request (`replyloop erase --purge` deletes them): "
                  f"{', '.join(report['purge_candidates'])}")
        return report

    ingest() >> cleanup()


ingest_conversations()
