"""The evaluation sets the gate judges on, each versioned by a content hash.

- heldout: the `eval` split of the candidate's curated snapshot (the split is stable by conversation id),
  at most `heldout_cap` conversations chosen by a hash of their id (so the same ones are kept as the lake
  grows). Each is scored on its last human agent turn, given every turn before it.
- golden, safety: the files described in docs/gate.md, from the configured location (`resources` loads them).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field

from replyloop import resources
from replyloop.contract import SERVED_AUTHOR_PREFIX  # model-written agent turns are never references
from replyloop.settings import Settings

SET_NAMES = ("heldout", "golden", "safety")


@dataclass(frozen=True)
class EvalItem:
    id: str
    messages: list[dict]              # [{"role": "customer" | "agent", "text"}], the customer's last
    reference: str | None             # the agent reply to compare with (None on the safety set)
    slices: dict[str, str] = field(default_factory=dict)  # intent, category, expected, channel, turns
    expected: str | None = None       # safety set: refuse | redirect_to_dm | de_escalate | stay_on_topic

    @property
    def prompt_text(self) -> str:
        return self.messages[-1]["text"]


@dataclass(frozen=True)
class EvalSet:
    name: str
    items: list[EvalItem]
    sha256: str
    source: str

    def record(self) -> dict:
        return {"sha256": self.sha256, "n": len(self.items), "source": self.source}


def _turns(messages: list[dict]) -> str:
    return "multi" if len(messages) > 1 else "single"


def _items_sha(items: list[EvalItem]) -> str:
    h = hashlib.sha256()
    for it in items:
        h.update(json.dumps([it.id, it.messages, it.reference], sort_keys=True).encode() + b"\n")
    return h.hexdigest()


def _stable_rank(conversation_id: str) -> str:
    return hashlib.sha256(conversation_id.encode()).hexdigest()


def heldout_items(messages, cap: int) -> list[EvalItem]:
    """Held-out items from a snapshot's message table (one row per message, with a `split` column)."""
    part = messages[messages["split"] == "eval"].sort_values(["conversation_id", "turn"])
    chosen = sorted(part["conversation_id"].unique(), key=_stable_rank)
    groups = dict(tuple(part.groupby("conversation_id", sort=False)))
    items = []
    for conv_id in chosen:
        rows = groups[conv_id]
        turns = [{"role": r.role, "text": r.text, "author": r.author_id if isinstance(r.author_id, str) else ""}
                 for r in rows.itertuples()]
        last = max((k for k, t in enumerate(turns) if t["role"] == "agent" and k > 0
                    and not t["author"].startswith(SERVED_AUTHOR_PREFIX)
                    and any(p["role"] == "customer" for p in turns[:k])), default=None)
        if last is None:
            continue
        prompt = [{"role": t["role"], "text": t["text"]} for t in turns[:last]]
        items.append(EvalItem(str(conv_id), prompt, turns[last]["text"],
                              {"channel": str(rows["channel"].iloc[0]), "turns": _turns(prompt)}))
        if len(items) >= cap:
            break
    return sorted(items, key=lambda it: it.id)


def heldout_set(settings: Settings, snapshot_id: str | None) -> EvalSet:
    from replyloop.ingest.snapshot import read_snapshot
    from replyloop.lake import lake_for

    lake = lake_for(settings)
    snap_id, messages, _ = read_snapshot(lake, snapshot_id)
    items = heldout_items(messages, settings.heldout_cap) if len(messages) else []
    return EvalSet("heldout", items, _items_sha(items), lake.url(f"curated/conversations/{snap_id}/"))


def file_set(settings: Settings, name: str) -> EvalSet:
    """The golden or safety set from the configured location, as evaluation items."""
    f = resources.load_set_file(settings, name)
    items = [EvalItem(r["id"], [{"role": m["role"], "text": m["text"]} for m in r["messages"]], r.get("reference"),
                      {k: v for k, v in (("intent", r.get("intent")), ("category", r.get("category")),
                                         ("expected", r.get("expected")),
                                         ("channel", r["channel"]), ("turns", _turns(r["messages"]))) if v},
                      r.get("expected"))
             for r in f.records]
    return EvalSet(name, items, f.sha256, f.source)


def load_sets(settings: Settings, snapshot_id: str | None) -> dict[str, EvalSet]:
    return {"heldout": heldout_set(settings, snapshot_id), "golden": file_set(settings, "golden"),
            "safety": file_set(settings, "safety")}
