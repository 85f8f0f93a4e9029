"""MLflow set-up shared by training, evaluation, the registry and serving.

Every task that talks to MLflow goes through `configure` first. Against a tracking server it applies the
HTTP retry and timeout settings (MLflow's own environment variables, from the replyloop settings), and a
server that cannot be reached stops the task there with `TrackingUnavailable`, which names the server and
the setting that points at it, before anything was written anywhere. The task's Airflow retries try again.
"""

from __future__ import annotations

import functools
import os
import subprocess

from urllib.parse import urlsplit, urlunsplit

from replyloop.settings import REPO_ROOT, Settings


class TrackingUnavailable(RuntimeError):
    """The MLflow tracking server does not answer; the message names it and the settings."""


def configure(settings: Settings) -> str:
    """Point MLflow at the configured store and make sure the experiment exists; return its id."""
    import mlflow
    from mlflow.exceptions import MlflowException

    settings.home.mkdir(parents=True, exist_ok=True)
    os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] = str(settings.mlflow_http_max_retries)
    os.environ["MLFLOW_HTTP_REQUEST_TIMEOUT"] = str(settings.mlflow_http_timeout)
    mlflow.set_tracking_uri(settings.tracking_uri)
    mlflow.set_registry_uri(settings.tracking_uri)
    try:
        exp = mlflow.get_experiment_by_name(settings.experiment)
    except MlflowException as exc:
        if _unreachable(exc):
            raise TrackingUnavailable(unreachable_message(settings, exc)) from exc
        raise
    if exp is None:
        location = None
        if not settings.tracking_uri.startswith(("http://", "https://", "databricks")):
            settings.artifact_root.mkdir(parents=True, exist_ok=True)
            location = settings.artifact_root.as_uri()
        exp_id = mlflow.create_experiment(settings.experiment, artifact_location=location)
    else:
        exp_id = exp.experiment_id
    mlflow.set_experiment(experiment_id=exp_id)
    return exp_id


def _unreachable(exc: BaseException) -> bool:
    """True when the cause is the network (refused, unresolvable, timed out), not an answer of the server."""
    import requests

    seen = exc
    while seen is not None:
        if isinstance(seen, (requests.exceptions.ConnectionError, requests.exceptions.Timeout)):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def redacted(uri: str) -> str:
    """The URI without a password (http://user:secret@host -> http://user:***@host)."""
    parts = urlsplit(uri)
    if parts.password is None:
        return uri
    return urlunsplit(parts._replace(netloc=parts.netloc.replace(f":{parts.password}@", ":***@", 1)))


def unreachable_message(settings: Settings, exc: BaseException) -> str:
    return (f"the MLflow tracking server {redacted(settings.tracking_uri)} is unreachable (setting "
            f"MLFLOW_TRACKING_URI, also read as REPLYLOOP_MLFLOW_TRACKING_URI): no answer after "
            f"{settings.mlflow_http_max_retries} retries (MLFLOW_HTTP_REQUEST_MAX_RETRIES) with a "
            f"{settings.mlflow_http_timeout} s timeout (MLFLOW_HTTP_REQUEST_TIMEOUT). Start the server or correct "
            f"the URI; nothing was written, and the task's retries try again. Cause: {exc}")


@functools.lru_cache(maxsize=1)
def code_version() -> str:
    """The git commit of the code that runs (with '+dirty' for local edits), or the package version."""
    from replyloop import __version__

    if os.environ.get("REPLYLOOP_CODE_VERSION"):
        return os.environ["REPLYLOOP_CODE_VERSION"]
    try:
        sha = subprocess.run(["git", "-C", str(REPO_ROOT), "rev-parse", "--short=12", "HEAD"], capture_output=True,
                             text=True, timeout=5, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(REPO_ROOT), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=5).stdout.strip()
        return f"{sha}+dirty" if dirty else sha
    except (OSError, subprocess.SubprocessError):
        return __version__
