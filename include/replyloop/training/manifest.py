"""The reproducibility manifest of a training run, and re-running a registered version from it.

Logged with every run as `manifest.json`: seed, package versions, data (snapshot id, content hash), base
model hash, chat-template hash, the full training config (LoRA included), device and dtype, the number of
data-parallel processes, code version, and the sizes of the training and validation splits.
Two runs with the same manifest on the same kind of CPU give the same adapter weights.
"""

from __future__ import annotations

import platform
from importlib.metadata import PackageNotFoundError, version

from replyloop.training.config import TrainConfig

PACKAGES = ("torch", "transformers", "peft", "mlflow", "numpy", "tokenizers", "safetensors")
ARTIFACT = "manifest.json"


class ManifestError(RuntimeError):
    """A registered version cannot be re-run; the message names the version or run."""


def package_versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = "absent"
    return out


def build_manifest(cfg: TrainConfig, *, snapshot_id: str, dataset_hash: str, base, chat_template_sha: str,
                   device: str, dtype: str, code_version: str, system_prompt: str, processes: int = 1,
                   splits: dict | None = None) -> dict:
    return {"seed": cfg.seed, "packages": package_versions(), "snapshot_id": snapshot_id,
            "dataset_hash": dataset_hash, "base_model_sha": base.sha, "base_model_source": base.source,
            "chat_template_sha": chat_template_sha, "train_config": cfg.to_dict(), "device": device, "dtype": dtype,
            "code_version": code_version, "system_prompt": system_prompt, "machine": platform.machine(),
            "torch_threads": _threads(), "processes": processes, "splits": splits or {}}


def _threads() -> int:
    import torch

    return torch.get_num_threads()


def manifest_of_version(settings, version: str) -> dict:
    """The manifest logged by the MLflow run that produced a registered version."""
    import mlflow

    from replyloop import registry

    mv = registry.client(settings).get_model_version(settings.model_name, str(version))
    try:
        return mlflow.artifacts.load_dict(f"runs:/{mv.run_id}/{ARTIFACT}")
    except Exception as exc:  # missing artifact or unreachable store: either way nothing to re-run
        raise ManifestError(f"{settings.model_name} version {version}: its MLflow run {mv.run_id} has no readable "
                            f"{ARTIFACT} ({exc}); versions trained before manifests existed cannot be re-run") from exc
