"""Privacy: erasure requests, the lake lock, purge and retention (docs/privacy.md)."""
