"""Shared by bench/serve.py and bench/load.py: a bench home with a registered LoRA version of the real
base model, a `replyloop serve` subprocess on loopback, and bounded concurrent clients."""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# The bench champion: LoRA r=16 on all linear layers with seeded random B (see seed_lora_b); the marker file
# in a bench home names it, so a home made by an older bench (zero-B adapter) gets a new champion.
ADAPTER_KIND = "lora r=16 all-linear, B ~ N(0, 0.02) seed 0"
LORA_B_STD = 0.02
sys.path.insert(0, str(ROOT / "include"))


def bench_env(home: Path, **extra: str) -> dict:
    keep = ("REPLYLOOP_BASE_MODEL",)  # a bench home may be made on another base model (bench/load.py --base-model)
    env = {k: v for k, v in os.environ.items()
           if (not k.startswith("REPLYLOOP_") or k in keep) and k != "MLFLOW_TRACKING_URI"}
    env.update({"REPLYLOOP_HOME": str(home), "PYTHONPATH": str(ROOT / "include"), "HF_HUB_OFFLINE": "1",
                "TRANSFORMERS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", "TQDM_DISABLE": "1", **extra})
    return env


def prepare_home(home: Path) -> dict:
    """Settings of a bench home whose champion is a LoRA adapter (r=16, all linear layers) on SmolLM2."""
    os.environ.update(bench_env(home))
    from replyloop import registry
    from replyloop.settings import get_settings

    get_settings.cache_clear()
    settings = get_settings()
    version = registry.alias_version(settings, "champion")
    marker = home / "bench-adapter" / "ADAPTER"
    if version is None or not marker.exists() or marker.read_text() != ADAPTER_KIND:
        version = _register(settings, home)  # also replaces a champion of an older bench (zero-B adapter)
        registry.promote(settings, version, reason="bench", by="bench", force=True)
        marker.write_text(ADAPTER_KIND)
    return {"settings": settings, "version": version}


def seed_lora_b(peft, std: float = LORA_B_STD, seed: int = 0) -> None:
    """Give every LoRA B matrix small seeded random values. peft initialises B to zero, so an untouched
    adapter's merged weights equal the base's and an agreement figure would only show numerical equivalence;
    with these values the merged model answers differently from the base on most prompts (bench/serve.py
    prints how many), as a trained adapter does."""
    import torch

    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in sorted(peft.named_parameters()):
            if "lora_B" in name:
                p.copy_(torch.randn(p.shape, generator=gen) * std)


def _register(settings, home: Path) -> str:
    import mlflow
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from replyloop import registry
    from replyloop.assistant import ReplyAssistant
    from replyloop.modeling import resolve_base_model
    from replyloop.tracking import configure

    base = resolve_base_model(settings)
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(base.path)
    peft = get_peft_model(model, LoraConfig(r=16, target_modules="all-linear"))
    seed_lora_b(peft)
    adapter = home / "bench-adapter" / "adapter"
    peft.save_pretrained(adapter)
    configure(settings)
    with mlflow.start_run(run_name="bench-serve") as run:
        info = mlflow.pyfunc.log_model(name="assistant", python_model=ReplyAssistant(),
                                       artifacts={"adapter": str(adapter)}, pip_requirements=["replyloop"],
                                       model_config={"base_model_sha": base.sha, "base_model": base.source,
                                                     "system_prompt": settings.rendered_system_prompt(),
                                                     "max_new_tokens": settings.max_new_tokens})
    return registry.register_version(settings, model_uri=info.model_uri, run_id=run.info.run_id,
                                     tags={registry.Tag.BASE_MODEL_SHA: base.sha}, description="bench adapter")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """`replyloop serve` in a subprocess on 127.0.0.1, with a fresh API key; stopped with SIGTERM."""

    def __init__(self, home: Path, **settings_env: str):
        self.key = "rl_" + secrets.token_urlsafe(24)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = bench_env(home, REPLYLOOP_API_KEY_HASHES=f"bench:{hashlib.sha256(self.key.encode()).hexdigest()}",
                        REPLYLOOP_SERVE_RATE_PER_MINUTE="1000000", REPLYLOOP_SERVE_RATE_BURST="100000",
                        **settings_env)
        self.log = open(home / f"serve-{self.port}.log", "w")
        self.proc = subprocess.Popen([sys.executable, "-m", "replyloop.cli", "serve", "--port", str(self.port)],
                                     env=env, stdout=self.log, stderr=subprocess.STDOUT)

    def wait_ready(self, timeout: float = 600) -> dict:
        import httpx

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited ({self.proc.returncode}); see {self.log.name}")
            try:
                r = httpx.get(self.url + "/readyz", timeout=2)
                if r.status_code == 200:
                    return r.json()
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        raise RuntimeError(f"server not ready in {timeout}s; see {self.log.name}")

    def stop(self) -> int:
        self.proc.terminate()
        code = self.proc.wait(timeout=60)
        self.log.close()
        return code


def batch_stats(url: str) -> tuple[float, float]:
    """(engine calls, requests in them) so far, from the server's `replyloop_batch_size` histogram."""
    import re

    import httpx

    text = httpx.get(url + "/metrics", timeout=10).text
    count = re.search(r"^replyloop_batch_size_count (\S+)$", text, re.M)
    total = re.search(r"^replyloop_batch_size_sum (\S+)$", text, re.M)
    return (float(count.group(1)) if count else 0.0), (float(total.group(1)) if total else 0.0)


def run_clients(n_clients: int, jobs: list, work) -> list:
    """Run `work(client_index, job)` for every job on n_clients threads; results in job order."""
    results = [None] * len(jobs)
    cursor = {"i": 0}
    lock = threading.Lock()

    def worker(idx: int):
        while True:
            with lock:
                i = cursor["i"]
                cursor["i"] += 1
            if i >= len(jobs):
                return
            results[i] = work(idx, jobs[i])

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(n_clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results


def read_bandwidth_gbs(threads: int) -> float:
    """Best of 5 reads of a 1 GiB float32 tensor with `threads` torch threads."""
    import torch

    torch.set_num_threads(threads)
    a = torch.ones(256 * 1024 * 1024)
    best = float("inf")
    for _ in range(5):
        t = time.perf_counter()
        a.sum()
        best = min(best, time.perf_counter() - t)
    del a
    return 4 * 256 * 1024 * 1024 / best / 1e9


def golden_conversations() -> list[list[dict]]:
    path = ROOT / "include" / "replyloop" / "resources" / "eval" / "golden.jsonl"
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    return [[{"role": m["role"], "text": m["text"]} for m in r["messages"]] for r in rows]


def pct(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, int(round(q * (len(s) - 1))))]
