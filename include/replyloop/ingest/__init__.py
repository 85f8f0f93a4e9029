"""Ingestion: read the landing zone, normalise, redact, de-duplicate, validate, snapshot."""
