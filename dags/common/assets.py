"""The Assets that connect the replyloop DAGs, declared once.

ingest_conversations --(curated_snapshot)--> finetune_lora --(candidate_model)--> evaluate_and_promote
monitor_feedback --(retrain_request)-------/                                      --(champion_model)--> serving
"""

from airflow.sdk import Asset

CURATED_SNAPSHOT = Asset(name="replyloop.curated_snapshot", uri="replyloop://lake/curated/conversations",
                         extra={"contract": "ARCHITECTURE.md#data-contract"})
CANDIDATE_MODEL = Asset(name="replyloop.candidate_model", uri="replyloop://registry/replyloop-assistant/candidate")
CHAMPION_MODEL = Asset(name="replyloop.champion_model", uri="replyloop://registry/replyloop-assistant/champion")
# Emitted by monitor_feedback when the down-vote rate or drift passes its threshold; finetune_lora is
# scheduled on `CURATED_SNAPSHOT | RETRAIN_REQUEST` and retrains on the latest snapshot.
RETRAIN_REQUEST = Asset(name="replyloop.retrain_request", uri="replyloop://monitoring/retrain-request")

DEFAULT_ARGS = {"owner": "replyloop", "retries": 2}
TAGS = ["replyloop"]
