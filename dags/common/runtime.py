"""Small helpers shared by the DAG files: settings with per-run overrides, lake credentials. No heavy imports."""

from __future__ import annotations

import logging
import os

LAKE_CONN_ID = "replyloop_lake"


def lake_credentials(conn_id: str = LAKE_CONN_ID) -> dict[str, str]:
    """AWS settings for an s3:// lake from the Airflow connection `replyloop_lake` (type aws), if defined.

    login/password are the access key pair; extra `endpoint_url` (or `service_config.s3.endpoint_url`) and
    `region_name` point boto3 at MinIO or another S3-compatible store.
    """
    from airflow.sdk import Connection
    from airflow.sdk.exceptions import AirflowNotFoundException

    try:
        conn = Connection.get(conn_id)
    except AirflowNotFoundException:  # not defined: boto3 falls back to the environment and its own config chain
        return {}
    extra = conn.extra_dejson or {}
    endpoint = extra.get("endpoint_url") or extra.get("service_config", {}).get("s3", {}).get("endpoint_url")
    env = {"AWS_ACCESS_KEY_ID": conn.login, "AWS_SECRET_ACCESS_KEY": conn.password,
           "AWS_ENDPOINT_URL": endpoint, "AWS_DEFAULT_REGION": extra.get("region_name")}
    return {k: v for k, v in env.items() if v}


class MissingLakeCredentials(RuntimeError):
    """An s3:// lake with neither the Airflow connection nor any credentials boto3 could find."""


def require_s3_credentials(lake: str, conn_id: str = LAKE_CONN_ID) -> None:
    """Fail before touching the lake when boto3 finds no credentials at all (environment, config files,
    instance or pod role), naming what to set; nothing has been read or written at that point."""
    import boto3

    if boto3.Session().get_credentials() is None:
        raise MissingLakeCredentials(
            f"the lake {lake} is on S3, but no S3 credentials were found: define the Airflow connection "
            f"'{conn_id}' (type aws: login = access key id, password = secret key, extra endpoint_url for "
            f"MinIO; AIRFLOW_CONN_{conn_id.upper()}), or set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY")


def settings_for(params: dict):
    """The package settings, with the run's Params and the lake connection layered on top."""
    from replyloop.settings import get_settings

    settings = get_settings()
    overrides = {}
    if params.get("lake_uri"):
        overrides["lake_uri"] = params["lake_uri"]
    lake = overrides.get("lake_uri") or settings.lake
    if lake.startswith("s3://"):
        creds = lake_credentials()
        if not creds:
            require_s3_credentials(lake)
        os.environ.update(creds)  # this task's own process: boto3 reads them when the lake opens
        if creds.get("AWS_ENDPOINT_URL"):
            overrides["aws_endpoint_url"] = creds["AWS_ENDPOINT_URL"]
    return settings.model_copy(update=overrides) if overrides else settings


def quiet_libraries() -> None:
    for noisy in ("great_expectations", "urllib3", "botocore", "alembic", "mlflow.store"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
