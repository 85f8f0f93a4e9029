"""Is there enough new curated data to be worth a nightly training run?"""

from __future__ import annotations

from replyloop import registry
from replyloop.ingest.pipeline import read_snapshot
from replyloop.lake import lake_for
from replyloop.settings import Settings


def new_data_since_last_training(settings: Settings, *, snapshot_id: str | None = None) -> dict:
    """Counts conversations of the snapshot that the newest registered version was not trained on."""
    lake = lake_for(settings)
    snap_id, messages, _ = read_snapshot(lake, snapshot_id)
    if snap_id is None:
        return {"ready": False, "new_conversations": 0, "message": "no curated snapshot yet: nothing to train on"}
    current = set(messages.loc[messages["split"] == "train", "conversation_id"])
    trained_on = None
    for v in reversed(registry.versions(settings)):
        trained_on = (v.tags or {}).get("replyloop.snapshot_id")
        if trained_on:
            break
    if trained_on == snap_id:
        new = 0
    elif trained_on:
        _, old, _ = read_snapshot(lake, trained_on)
        new = len(current - set(old["conversation_id"]))
    else:
        new = len(current)
    ready = new >= settings.min_new_conversations
    return {"ready": ready, "new_conversations": new, "snapshot_id": snap_id, "last_trained_snapshot": trained_on,
            "message": f"{new} new training conversations in snapshot {snap_id} since {trained_on or 'the start'} "
                       f"(need {settings.min_new_conversations}): {'training' if ready else 'skipping'}"}
