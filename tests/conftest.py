"""Shared fixtures. Each test session gets its own embedded home; nothing touches ./.replyloop.

The environment is set before anything imports Airflow, MLflow or transformers, since they read it at
import time.
"""

from __future__ import annotations

import contextlib
import http.server
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

_SESSION = Path(tempfile.mkdtemp(prefix="replyloop-tests-"))
REPO = Path(__file__).resolve().parents[1]
os.environ.update({
    "REPLYLOOP_HOME": str(_SESSION / "home"),
    "AIRFLOW_HOME": str(_SESSION / "airflow"),
    "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "dags"),
    "AIRFLOW__CORE__PLUGINS_FOLDER": str(REPO / "plugins"),
    "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
    "AIRFLOW__CORE__UNIT_TEST_MODE": "False",
    "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{_SESSION / 'airflow' / 'airflow.db'}",
    "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "HF_EVALUATE_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
    "TOKENIZERS_PARALLELISM": "false", "GX_ANALYTICS_ENABLED": "False", "MLFLOW_ENABLE_ASYNC_LOGGING": "false",
    "TQDM_DISABLE": "1",
})
if os.environ.get("PYTEST_XDIST_WORKER"):
    # two workers share two cores: one torch/OpenMP thread each, or their spinning threads fight over them
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    os.environ.setdefault("MKL_NUM_THREADS", "1")
    os.environ.setdefault("REPLYLOOP_SERVE_THREADS", "1")  # llama.cpp sets its own threads, from this setting
for var in ("MLFLOW_TRACKING_URI", "REPLYLOOP_LAKE_URI", "AWS_ENDPOINT_URL", "REPLYLOOP_BASE_MODEL"):
    os.environ.pop(var, None)
sys.path.insert(0, str(REPO / "dags"))

import pytest  # noqa: E402

from replyloop.settings import Settings, get_settings  # noqa: E402


@contextlib.contextmanager
def module_home(tmp_path_factory, name: str, **env: str | None):
    """Settings of an embedded home of its own for a module's fixtures, with `REPLYLOOP_<KEY>=value` for each
    keyword (None unsets one); the environment and the cached settings are restored afterwards."""
    mp = pytest.MonkeyPatch()
    mp.setenv("REPLYLOOP_HOME", str(tmp_path_factory.mktemp(name) / "home"))
    mp.delenv("MLFLOW_TRACKING_URI", raising=False)  # mlflow.set_tracking_uri exports it
    for key, value in env.items():
        if value is None:
            mp.delenv(f"REPLYLOOP_{key}", raising=False)
        else:
            mp.setenv(f"REPLYLOOP_{key}", value)
    get_settings.cache_clear()
    try:
        yield get_settings()
    finally:
        mp.undo()
        os.environ.pop("MLFLOW_TRACKING_URI", None)
        get_settings.cache_clear()


def curate_demo_days(settings, conversations_per_day: int, days: int = 1) -> None:
    """Land `days` of generated exports from 2026-11-20 on into the settings' lake and ingest them."""
    from datetime import date

    from replyloop.demo_data import generate_landing
    from replyloop.ingest.pipeline import run_ingest
    from replyloop.lake import open_lake

    generate_landing(open_lake(settings.lake).write_bytes, start_date=date(2026, 11, 20), days=days,
                     conversations_per_day=conversations_per_day)
    run_ingest(settings)


@pytest.fixture
def home(tmp_path, monkeypatch) -> Path:
    """A fresh embedded home for one test, also visible to code that calls get_settings()."""
    h = tmp_path / "home"
    monkeypatch.setenv("REPLYLOOP_HOME", str(h))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)  # mlflow.set_tracking_uri exports it
    get_settings.cache_clear()
    yield h
    get_settings.cache_clear()


@pytest.fixture
def settings(home) -> Settings:
    return get_settings()


@pytest.fixture
def lake(settings):
    from replyloop.lake import open_lake

    return open_lake(settings.lake)


@pytest.fixture(scope="session")
def smollm2_tokenizer_dir() -> Path:
    """The SmolLM2 tokenizer (with its chat template), read once from the shipped GGUF file."""
    from transformers import AutoTokenizer

    from replyloop.modeling import smollm2_gguf

    gguf = smollm2_gguf()
    out = _SESSION / "smollm2-tokenizer"
    AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name).save_pretrained(out)
    return out


def _save_tiny_llama(tok, out: Path) -> Path:
    """A randomly initialised (seeded) two-layer Llama for `tok`, saved with it in `out`."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
                      tie_word_embeddings=True, bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                      pad_token_id=tok.pad_token_id)
    LlamaForCausalLM(cfg).save_pretrained(out)
    tok.save_pretrained(out)
    return out


@pytest.fixture(scope="session")
def tiny_model_dir(smollm2_tokenizer_dir) -> Path:
    """A randomly initialised two-layer Llama with the SmolLM2 tokenizer: the real code path, fast."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(smollm2_tokenizer_dir)
    return _save_tiny_llama(tok, _SESSION / "tiny-llama")


CHATML = ("{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + "
          "'<|im_end|>' + '\\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}")


def build_tiny_learner(out: Path) -> Path:
    """A randomly initialised two-layer Llama with a 1,024-token BPE vocabulary fitted on demo-brand text
    (ChatML template), saved in `out`. Also used by bench/likelihood_tolerances.py."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    from replyloop.demo_data import iter_canonical_conversations

    texts = [m["text"] for c in iter_canonical_conversations(300, seed=3) for m in c["messages"]]
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    bpe.train_from_iterator(texts, trainers.BpeTrainer(
        vocab_size=1024, special_tokens=["<|endoftext|>", "<|im_start|>", "<|im_end|>"], show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    tok = PreTrainedTokenizerFast(tokenizer_object=bpe, bos_token="<|im_start|>", eos_token="<|im_end|>",
                                  pad_token="<|endoftext|>", unk_token="<|endoftext|>", chat_template=CHATML)
    return _save_tiny_llama(tok, out)


@pytest.fixture(scope="session")
def tiny_learner_dir() -> Path:
    """The tiny learner (`build_tiny_learner`). Small enough that a LoRA adapter learns the demo brand's
    replies in ~100 CPU steps, so tests can know for certain that a trained candidate beats the base model."""
    return build_tiny_learner(_SESSION / "tiny-learner")


@pytest.fixture
def tiny_settings(home, tiny_model_dir, monkeypatch) -> Settings:
    """Settings whose base model is the tiny Llama, with a small training budget."""
    monkeypatch.setenv("REPLYLOOP_BASE_MODEL", str(tiny_model_dir))
    monkeypatch.setenv("REPLYLOOP_MAX_NEW_TOKENS", "12")
    monkeypatch.setenv("REPLYLOOP_MIN_NEW_CONVERSATIONS", "5")
    get_settings.cache_clear()
    return get_settings()


@pytest.fixture
def demo_lake(lake):
    """The lake with two days of generated landing data written into it."""
    from datetime import date

    from replyloop.demo_data import generate_landing

    summary = generate_landing(lake.write_bytes, start_date=date(2026, 11, 20), days=2, conversations_per_day=120)
    lake.summary = summary
    return lake


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _moto_server(extra_env: dict | None = None):
    port = _free_port()
    env = {**os.environ, "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", **(extra_env or {})}
    proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                break
        except OSError:
            time.sleep(0.2)
    else:
        proc.kill()
        pytest.fail("moto server did not start on loopback within 30 s")
    return proc, url


@pytest.fixture(scope="session")
def s3_endpoint():
    """A real S3-compatible server (moto's server mode) over HTTP on loopback, for boto3."""
    proc, url = _moto_server()
    yield url
    proc.terminate()
    proc.wait(timeout=10)


@pytest.fixture
def s3_auth_endpoint():
    """A moto server that enforces IAM after its first 3 actions (bucket, user, access key)."""
    proc, url = _moto_server({"INITIAL_NO_AUTH_ACTION_COUNT": "3"})
    yield url
    proc.terminate()
    proc.wait(timeout=10)


@pytest.fixture
def s3_env(s3_endpoint, monkeypatch):
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3_endpoint)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    return s3_endpoint


@pytest.fixture(scope="session")
def tiny_loop(tmp_path_factory, tiny_model_dir):
    """One pass of the loop on the tiny model (ingest -> train -> evaluate/promote), shared by the session.

    Tests that use it may add versions and move aliases, but must leave `champion` where they found it."""
    from replyloop.evaluation.run import evaluate_candidate
    from replyloop.lake import open_lake
    from replyloop.training.config import load_train_config
    from replyloop.training.train import train

    with module_home(tmp_path_factory, "loop", BASE_MODEL=str(tiny_model_dir), MAX_NEW_TOKENS="8") as settings:
        curate_demo_days(settings, 60)
        trained = train(load_train_config(max_steps=3, batch_size=2, max_eval_examples=4), settings)
        gate = evaluate_candidate(settings)  # the shipped gate: too little evidence on this lake, so it fails
        yield {"settings": settings, "trained": trained, "gate": gate, "lake": open_lake(settings.lake)}


class _FailingRegistry(http.server.BaseHTTPRequestHandler):
    """An MLflow server whose experiments answer and whose model registry fails (HTTP 500)."""

    def do_GET(self):  # noqa: N802 (http.server's name)
        if self.path.startswith("/api/2.0/mlflow/experiments/"):
            body = {"experiment": {"experiment_id": "1", "name": "replyloop", "lifecycle_stage": "active"}}
            return self._answer(200, body)
        return self._answer(500, {"error_code": "INTERNAL_ERROR", "message": "database is locked"})

    def _answer(self, status: int, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass



@pytest.fixture
def failing_registry_uri():
    """The URI of a real HTTP server that answers MLflow's experiment calls and fails its registry calls."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _FailingRegistry)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
