"""Resumable training state in the MLflow run's artifact store.

Every `checkpoint_every` optimizer steps the trainable (LoRA) weights, the optimizer and scheduler state,
the torch RNG state, the best adapter so far and the step are written as one file,
`checkpoints/step-NNNNNN/state.pt`, then `checkpoints/latest.json` is pointed at it with the file's
sha256. A pointer only ever names a complete file, so a task killed mid-write resumes from the previous
checkpoint; a file that does not match its hash stops the run with a message naming it. The superseded
checkpoint is deleted where the artifact store allows it.
"""

from __future__ import annotations

import hashlib
import logging
import tempfile
from pathlib import Path

log = logging.getLogger(__name__)
POINTER = "checkpoints/latest.json"


class CheckpointError(RuntimeError):
    """A checkpoint cannot be read; the message names the run and the file."""


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def trainable_state(model) -> dict:
    return {n: p.detach().to("cpu", copy=True) for n, p in model.named_parameters() if p.requires_grad}


def load_trainable(model, state: dict) -> None:
    import torch

    params = dict(model.named_parameters())
    with torch.no_grad():
        for name, value in state.items():
            params[name].copy_(value)


def save(client, run_id: str, state: dict) -> str:
    """Write a checkpoint of `state` (which holds "step") to the run; return its artifact path."""
    import torch

    folder = f"checkpoints/step-{state['step']:06d}"
    previous = latest_pointer(client, run_id)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "state.pt"
        torch.save(state, path)
        client.log_artifact(run_id, str(path), folder)
        client.log_dict(run_id, {"step": state["step"], "path": f"{folder}/state.pt", "sha256": _sha256(path)},
                        POINTER)
    if previous and not previous["path"].startswith(folder + "/"):
        _delete(client, run_id, previous["path"].rsplit("/", 1)[0])
    return folder


def _delete(client, run_id: str, folder: str) -> None:
    from mlflow.exceptions import MlflowException
    from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository

    repo = get_artifact_repository(client.get_run(run_id).info.artifact_uri)
    try:
        repo.delete_artifacts(folder)
    except (NotImplementedError, MlflowException, OSError) as exc:
        log.info("kept superseded checkpoint %s of run %s (%s)", folder, run_id, exc)


def latest_pointer(client, run_id: str) -> dict | None:
    import json

    if not any(f.path == POINTER for f in client.list_artifacts(run_id, "checkpoints")):
        return None
    with tempfile.TemporaryDirectory() as tmp:
        return json.loads(Path(client.download_artifacts(run_id, POINTER, tmp)).read_text())


def load_latest(client, run_id: str) -> dict | None:
    """The newest checkpoint of a run, verified against its hash; None when the run has none."""
    import torch

    pointer = latest_pointer(client, run_id)
    if pointer is None:
        return None
    where = f"checkpoint {pointer['path']} of MLflow run {run_id}"
    with tempfile.TemporaryDirectory() as tmp:
        try:
            local = Path(client.download_artifacts(run_id, pointer["path"], tmp))
        except Exception as exc:  # any artifact-store failure: the message says which file
            raise CheckpointError(f"{where} cannot be downloaded ({exc})") from exc
        if _sha256(local) != pointer["sha256"]:
            raise CheckpointError(f"{where} is corrupt: its sha256 does not match {POINTER}; start a new Airflow "
                                  "run (or delete the checkpoints folder of that MLflow run) to train from scratch")
        try:
            state = torch.load(local, weights_only=True)
        except Exception as exc:  # torch raises several types for unreadable files
            raise CheckpointError(f"{where} cannot be read ({exc})") from exc
    log.info("resuming MLflow run %s from %s (step %d)", run_id, pointer["path"], state["step"])
    return state
