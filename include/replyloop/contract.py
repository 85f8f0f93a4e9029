"""The data contract: landing layout, curated schema and quarantine reason codes.

See ARCHITECTURE.md ("Data contract"). Every raw record ends in exactly one place: the curated snapshot,
the quarantine (with one of the reason codes below) or the duplicate count.
"""

from __future__ import annotations

import pyarrow as pa

SCHEMA_VERSION = 1

RAW_PREFIXES = {
    "conversations": "raw/conversations",
    "twcs": "raw/twcs",
    "feedback": "raw/feedback",
    "replies": "raw/replies",  # every reply the API served (docs/data-contract.md), curated like raw/conversations
}
# Agent turns written by the model itself (served replies) carry author ids "replyloop:v<version>".
SERVED_AUTHOR_PREFIX = "replyloop:"
CURATED_PREFIX = "curated/conversations"
CURRENT_KEY = f"{CURATED_PREFIX}/CURRENT"
QUARANTINE_PREFIX = "quarantine"
STATE_PREFIX = "state/ingested"

# Erasure requests (docs/privacy.md): an append-only log, one JSON object per request, never rewritten.
# It holds ids only, never message text. Ingestion keeps every id it names out of later snapshots.
ERASURE_PREFIX = "privacy/erasures"  # privacy/erasures/<requested_at>-<request_id>.json
ERASURE_KINDS = ("author", "conversation")  # author = the platform user id as landed (messages[].author_id)
ERASURE_RECORD_FIELDS = {
    "request_id": "unique id of the request (hex)",
    "requested_at": "UTC time the request was recorded, ISO-8601 with Z",
    "requested_by": "who asked for it (a person, a ticket, 'airflow:<run id>')",
    "reason": "free text given with the request (no personal data), or null",
    "subjects": "[{'kind': 'author' | 'conversation', 'id': ...}], each id once",
    "matched": "per subject: conversations and messages of the current snapshot that held it when recorded",
    "snapshot_id": "the CURRENT snapshot when the request was recorded",
    "model_versions": "registered versions whose training snapshot held a subject (lineage report)",
}
ERASURE_STATE_PREFIX = "state/erasure"  # state/erasure/<snapshot_id>.json: the requests a snapshot is clean of
LAKE_LOCK_KEY = "locks/lake.lock"  # held by an ingestion run, an erasure and a purge/cleanup: they never interleave

ROLES = ("customer", "agent")
CHANNELS = ("public_reply", "direct_message")
RATINGS = ("up", "down")

# Reason codes of the quarantine. The message that goes with each says what and where.
REASONS = {
    "invalid_utf8": "the line is not valid UTF-8",
    "malformed_json": "the line is not a JSON object",
    "malformed_csv": "the CSV row cannot be parsed or lacks columns",
    "unreadable_file": "the file cannot be read to the end (truncated or corrupt)",
    "missing_field": "a required field is missing or empty",
    "bad_type": "a field has the wrong type",
    "unknown_role": "a message role is neither customer nor agent",
    "unknown_channel": "the channel is neither public_reply nor direct_message",
    "bad_timestamp": "a timestamp cannot be parsed",
    "future_timestamp": "a timestamp lies in the future",
    "empty_text": "a message has no text after normalisation",
    "too_long": "a message is longer than the configured maximum",
    "no_customer_turn": "the conversation has no customer message",
    "bad_turn_order": "the conversation does not start with a customer or its timestamps go backwards",
    "duplicate_message_id": "two messages share a message id",
    "broken_thread": "a reply points to a tweet that is missing or forms a cycle",
    "pii_leak": "personal data survived redaction",
    "eval_contamination": "the conversation is part of an evaluation or golden set",
    "unknown_conversation": "feedback refers to a conversation or message that is not known",
    "bad_rating": "feedback rating is neither up nor down",
    "validation_failed": "a Great Expectations expectation failed for this record",
}

# One row per message; conversation fields repeated. Sorted by (conversation_id, turn).
MESSAGE_SCHEMA = pa.schema(
    [
        ("conversation_id", pa.string()),
        ("platform", pa.string()),
        ("channel", pa.string()),
        ("language", pa.string()),
        ("conversation_created_at", pa.string()),
        ("turn", pa.int32()),
        ("message_id", pa.string()),
        ("role", pa.string()),
        ("author_id", pa.string()),
        ("text", pa.string()),
        ("created_at", pa.string()),
        ("source", pa.string()),
        ("partition", pa.string()),
        ("content_hash", pa.string()),
        ("split", pa.string()),
    ]
)

FEEDBACK_SCHEMA = pa.schema(
    [
        ("event_id", pa.string()),
        ("conversation_id", pa.string()),
        ("message_id", pa.string()),
        ("rating", pa.string()),
        ("correction", pa.string()),
        ("model_version", pa.string()),
        ("created_at", pa.string()),
        ("partition", pa.string()),
    ]
)
