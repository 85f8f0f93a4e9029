"""MLflow set-up shared by training, evaluation, the registry and serving."""

from __future__ import annotations

import functools
import os
import subprocess

from replyloop.settings import REPO_ROOT, Settings


def configure(settings: Settings) -> str:
    """Point MLflow at the configured store and make sure the experiment exists; return its id."""
    import mlflow

    settings.home.mkdir(parents=True, exist_ok=True)
    mlflow.set_tracking_uri(settings.tracking_uri)
    mlflow.set_registry_uri(settings.tracking_uri)
    exp = mlflow.get_experiment_by_name(settings.experiment)
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
