"""Small helpers shared by the DAG files: settings with per-run overrides, logging. No heavy imports."""

from __future__ import annotations

import logging


def settings_for(params: dict):
    """The package settings, with the run's Params layered on top where they are set."""
    from replyloop.settings import get_settings

    overrides = {}
    if params.get("lake_uri"):
        overrides["lake_uri"] = params["lake_uri"]
    settings = get_settings()
    return settings.model_copy(update=overrides) if overrides else settings


def quiet_libraries() -> None:
    for noisy in ("great_expectations", "urllib3", "botocore", "alembic", "mlflow.store"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
