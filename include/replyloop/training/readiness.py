"""Is there enough new curated data to be worth a nightly training run, and which snapshot to train?

New data = training conversations the last trained snapshot did not have, plus corrections (feedback
with a corrected reply) it did not have: a night of reviewed replies alone is worth a run. A retrain
request from monitoring waives the minimum: any new data in the latest snapshot is enough, but a snapshot
the newest version was already trained on is not trained again (the same data would give the same model).
"""

from __future__ import annotations

import pandas as pd

from replyloop import registry
from replyloop.ingest.pipeline import read_snapshot
from replyloop.lake import lake_for
from replyloop.settings import Settings


def snapshot_to_train(params: dict, event_extras: list[dict]) -> str | None:
    """A manual run's `snapshot_id` Param, else the snapshot of the newest triggering Asset event, else None
    (CURRENT)."""
    if params.get("snapshot_id"):
        return params["snapshot_id"]
    named = [e["snapshot_id"] for e in event_extras if e and e.get("snapshot_id")]
    return named[-1] if named else None


def _corrections(feedback: pd.DataFrame) -> set[tuple[str, str, str]]:
    if not len(feedback):
        return set()
    rows = feedback[feedback["correction"].notna() & (feedback["correction"].astype(str).str.len() > 0)]
    return set(zip(rows["conversation_id"], rows["message_id"], rows["correction"]))


def _last_trained_snapshot(settings: Settings) -> str | None:
    for v in reversed(registry.versions(settings)):
        if trained_on := (v.tags or {}).get(registry.Tag.SNAPSHOT):
            return trained_on
    return None


def new_data_since_last_training(settings: Settings, *, snapshot_id: str | None = None,
                                 retrain_requested: bool = False) -> dict:
    """Counts conversations and corrections of the snapshot the newest registered version was not trained on.
    `retrain_requested` (monitoring asked for it) makes any new data enough instead of the minimum."""
    lake = lake_for(settings)
    snap_id, messages, feedback = read_snapshot(lake, snapshot_id)
    if snap_id is None:
        return {"ready": False, "new_conversations": 0, "new_corrections": 0,
                "message": "no curated snapshot yet: nothing to train on"}
    current = set(messages.loc[messages["split"] == "train", "conversation_id"])
    trained_on = _last_trained_snapshot(settings)
    if trained_on == snap_id:
        new, corrections = 0, 0
    elif trained_on:
        _, old, old_feedback = read_snapshot(lake, trained_on)
        new = len(current - set(old["conversation_id"]))
        corrections = len(_corrections(feedback) - _corrections(old_feedback))
    else:
        new, corrections = len(current), len(_corrections(feedback))
    need = 1 if retrain_requested else settings.min_new_conversations
    ready = new + corrections >= need
    why = "a retrain request: any new data" if retrain_requested else str(need)
    return {"ready": ready, "new_conversations": new, "new_corrections": corrections, "snapshot_id": snap_id,
            "last_trained_snapshot": trained_on, "retrain_requested": retrain_requested,
            "message": f"{new} new training conversations and {corrections} new corrections in snapshot {snap_id} "
                       f"since {trained_on or 'the start'} (need {why} together): "
                       f"{'training' if ready else 'skipping'}"}
