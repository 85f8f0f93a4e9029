"""Inference engines for a registered version: llama.cpp or torch (auto), CTranslate2, or the HF reference.

Chosen by measurement (bench/serve.py, docs/api.md). `auto` is the llama.cpp engine
(`llamacpp_engine.LlamaCppEngine`: a GGUF of the version's merged weights, written once per content hash,
decoded a micro-batch at a time with the version's own logits processors) for Llama-architecture models on
CPU when llama-cpp-python is installed, else the torch engine (`torch_engine.TorchEngine`: the version's
own reply generator, LoRA merged, with a cached system-prompt prefix and one decoding loop per micro-batch;
on CUDA the same code uses the GPU). Both decode by the reference rule: greedy, repetition penalty 1.1 and
no repeated 4-grams over prompt + reply with the end of turn exempt, no token containing '@'
(`modeling.decoding_rule`). CTranslate2 (`REPLYLOOP_SERVE_ENGINE=ctranslate2`) mirrors that rule by
running the prompt through its decoding loop (slow for batches of prompts of different lengths). All build
prompts with `replyloop.chat` (what is trained is what is served).

Converted files are written once per content hash (of the adapter files, the base model's hash and the
converter's version) under `$REPLYLOOP_HOME/models/engines/<engine>/<hash>`, so a version is converted
once per machine, whatever its number.
"""

from __future__ import annotations

import hashlib
import json
import importlib.util
import logging
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from replyloop import registry
from replyloop.chat import prompt_ids
from replyloop.serving import llamacpp_engine
from replyloop.serving.converted import written_once
from replyloop.settings import Settings

log = logging.getLogger(__name__)
# The reference decoding rule's numbers (modeling.decoding_rule), for CTranslate2, whose decoding loop has
# no hook for the rule's end-of-turn exemption (docs/api.md).
from replyloop.modeling import NO_REPEAT_NGRAM, REPETITION_PENALTY  # noqa: E402


class EngineError(RuntimeError):
    """An engine cannot be built for a version; the message names the version and the setting."""


@dataclass(frozen=True)
class Generation:
    text: str
    tokens: int


class Engine(Protocol):
    name: str
    device: str

    def generate(self, conversations: list[list[dict]]) -> list[Generation]: ...


class HFEngine:
    """The reference path: the registered pyfunc's ReplyGenerator (transformers `generate`)."""

    name = "hf"

    def __init__(self, generator):
        self.generator = generator
        self.device = str(generator.model.device)

    def generate(self, conversations: list[list[dict]]) -> list[Generation]:
        texts = self.generator.reply(conversations, batch_size=max(1, len(conversations)))
        return [Generation(t, len(self.generator.tok(t, add_special_tokens=False)["input_ids"])) for t in texts]


class CT2Engine:
    """Merged weights in CTranslate2; one `generate_batch` per micro-batch."""

    name = "ctranslate2"

    def __init__(self, model_dir: Path, *, system_prompt: str, max_new_tokens: int, max_prompt_tokens: int,
                 compute_type: str = "auto", threads: int = 0):
        import ctranslate2
        from transformers import AutoTokenizer

        self.device = "cuda" if ctranslate2.get_cuda_device_count() > 0 else "cpu"
        if compute_type == "auto":  # float32 on CPU: int8 changes the greedy replies (bench/serve.py)
            supported = ctranslate2.get_supported_compute_types(self.device)
            compute_type = "float32" if self.device == "cpu" else ("bfloat16" if "bfloat16" in supported else "float16")
        self.compute_type = compute_type
        self.tok = AutoTokenizer.from_pretrained(model_dir / "tokenizer")
        self.gen = ctranslate2.Generator(str(model_dir / "ct2"), device=self.device, compute_type=compute_type,
                                         inter_threads=1, intra_threads=threads)
        self.system_prompt = system_prompt
        self.max_new_tokens = max_new_tokens
        self.max_prompt_tokens = max_prompt_tokens
        self.suppressed = [[t] for t in self.tok.get_vocab() if "@" in t]

    def generate(self, conversations: list[list[dict]]) -> list[Generation]:
        prompts = [self.tok.convert_ids_to_tokens(prompt_ids(self.tok, c, self.system_prompt, self.max_prompt_tokens))
                   for c in conversations]
        # The prompt goes through the decoding loop (include_prompt_in_result) so that the repetition penalty
        # and the n-gram block see the prompt's tokens, as transformers' `generate` does; with the prompt
        # forwarded at once they would see the reply only, and the replies differ (measured: 0/4 equal).
        results = self.gen.generate_batch(
            prompts, max_length=max(map(len, prompts)) + self.max_new_tokens, sampling_topk=1,
            include_prompt_in_result=True, repetition_penalty=REPETITION_PENALTY,
            no_repeat_ngram_size=NO_REPEAT_NGRAM, suppress_sequences=self.suppressed or None,
            end_token=self.tok.eos_token)
        out = []
        for prompt, r in zip(prompts, results, strict=True):
            ids = r.sequences_ids[0][len(prompt) - 1:][: self.max_new_tokens]  # the result omits the first token
            if self.tok.eos_token_id in ids:
                ids = ids[: ids.index(self.tok.eos_token_id)]
            out.append(Generation(self.tok.decode(ids, skip_special_tokens=True).strip(), len(ids)))
        return out


def ctranslate2_installed() -> bool:
    return importlib.util.find_spec("ctranslate2") is not None


def _content_hash(base_model_sha: str, adapter_dir: Path | None) -> str:
    from importlib.metadata import version

    h = hashlib.sha256(f"base={base_model_sha};ct2={version('ctranslate2')}".encode())
    for p in sorted(adapter_dir.rglob("*")) if adapter_dir else ():
        if p.is_file():
            h.update(p.relative_to(adapter_dir).as_posix().encode())
            h.update(p.read_bytes())
    return h.hexdigest()[:20]


def convert_version(settings: Settings, files: registry.VersionFiles) -> Path:
    """Merge the version's adapter into its base and convert it for CTranslate2, once per content hash."""
    return convert_model(settings, files.base_model_sha, files.adapter_dir, label=f"version {files.version}")


def convert_model(settings: Settings, base_model_sha: str, adapter_dir: Path | None, *, label: str) -> Path:
    """The base model (merged with `adapter_dir` when given) in CTranslate2's format, once per content hash."""
    dest = settings.model_cache / "engines" / "ctranslate2" / _content_hash(base_model_sha, adapter_dir)
    if (dest / "ct2" / "model.bin").exists():
        return dest
    from ctranslate2.converters import TransformersConverter
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from replyloop.modeling import base_model_by_hash

    started = time.monotonic()
    base = base_model_by_hash(settings, base_model_sha)
    with written_once(dest) as tmp:
        model = AutoModelForCausalLM.from_pretrained(base.path, dtype="float32")
        merged = PeftModel.from_pretrained(model, adapter_dir).merge_and_unload() if adapter_dir else model
        merged.save_pretrained(tmp / "hf")
        tok = AutoTokenizer.from_pretrained(base.path)
        tok.save_pretrained(tmp / "hf")
        tok.save_pretrained(tmp / "tokenizer")
        TransformersConverter(str(tmp / "hf")).convert(str(tmp / "ct2"), quantization="float16", force=True)
        context = int(getattr(merged.config, "max_position_embeddings", 2048) or 2048)
        (tmp / "engine.json").write_text(json.dumps({"context": context, "model": label}))
        shutil.rmtree(tmp / "hf")
    log.info("converted %s for CTranslate2 in %.0fs", label, time.monotonic() - started)
    return dest


def version_config(files: registry.VersionFiles) -> dict:
    """The pyfunc's model_config (system prompt, max_new_tokens). MLflow writes it under the flavor's
    `config` key; `registry.download_version` reads `model_config`, so fall back to the MLmodel file."""
    if files.model_config:
        return files.model_config
    from mlflow.models import Model

    mlmodel = files.adapter_dir.parents[1] / "MLmodel"
    return Model.load(mlmodel).flavors.get("python_function", {}).get("config") or {}


TORCH_DTYPES = {"auto": None, "float32": "float32", "bfloat16": "bfloat16", "float16": "float16"}


def _torch_engine(settings: Settings, generator):
    """`generator` (a ReplyGenerator) on the torch engine, in the configured dtype."""
    import torch

    from replyloop.serving.torch_engine import TorchEngine

    ctype = settings.serve_compute_type
    if ctype not in TORCH_DTYPES:
        raise EngineError(f"REPLYLOOP_SERVE_COMPUTE_TYPE={ctype!r} is not one of {', '.join(TORCH_DTYPES)} "
                          "for the torch engine")
    if settings.serve_threads:
        torch.set_num_threads(settings.serve_threads)
    dtype = getattr(torch, TORCH_DTYPES[ctype]) if TORCH_DTYPES[ctype] else None  # auto: as the pyfunc loads it
    engine = TorchEngine(generator, dtype=dtype, max_prompt_tokens=settings.serve_max_prompt_tokens)
    draft = _draft_kind(settings.serve_draft, engine)
    if draft:
        engine.use_draft(draft, k=settings.serve_draft_tokens)
    return engine


def _draft_kind(choice: str, engine) -> str | None:
    """The draft model of lone requests; 'auto' is none: on this 2-core CPU a draft step costs about what a
    float32 step costs (per-step overhead, not weight bytes, dominates), so drafting was slower (docs/api.md)."""
    if choice not in ("auto", "none", "int8", "bfloat16"):
        raise EngineError(f"REPLYLOOP_SERVE_DRAFT={choice!r} is not one of auto, none, int8, bfloat16")
    return None if choice in ("auto", "none") else choice


ENGINES = ("auto", "torch", "llamacpp", "ctranslate2", "hf")


def torch_engine(settings: Settings, version: str):
    """The version's reference generator on the torch engine, in the configured dtype."""
    return _torch_engine(settings, registry.load_version(settings, version))


def _choice(settings: Settings) -> str:
    choice = settings.serve_engine
    if choice not in ENGINES:
        raise EngineError(f"REPLYLOOP_SERVE_ENGINE={choice!r} is not one of {', '.join(ENGINES)}")
    if choice == "ctranslate2" and not ctranslate2_installed():
        raise EngineError("REPLYLOOP_SERVE_ENGINE=ctranslate2 but the package ctranslate2 is not installed")
    if choice == "llamacpp" and not llamacpp_engine.installed():
        raise EngineError("REPLYLOOP_SERVE_ENGINE=llamacpp but the package llama-cpp-python is not installed")
    _draft_kind(settings.serve_draft, None)  # checked whichever engine 'auto' turns out to be
    return choice


def _auto(generator) -> str:
    """'auto': llama.cpp for a Llama-architecture model on CPU when llama-cpp-python is installed (faster at
    every concurrency measured, same decoding rule; docs/api.md), else the torch engine (CUDA, other models)."""
    from replyloop.serving.gguf_llama import unsupported_reason

    if llamacpp_engine.installed() and generator.model.device.type == "cpu" \
            and unsupported_reason(generator.model.config) is None:
        return "llamacpp"
    return "torch"


def _by_choice(settings: Settings, choice: str, generator, base_model_sha: str, adapter_dir: Path | None,
               label: str) -> Engine:
    """`generator` (a ReplyGenerator) on the torch or llama.cpp engine, or as the HF reference itself."""
    choice = _auto(generator) if choice == "auto" else choice
    if choice == "hf":
        return HFEngine(generator)
    if choice == "torch":
        return _torch_engine(settings, generator)
    return _llamacpp(settings, generator, base_model_sha, adapter_dir, label)


def _llamacpp(settings: Settings, generator, base_model_sha: str, adapter_dir: Path | None, label: str):
    from replyloop.serving.gguf_llama import unsupported_reason

    if reason := unsupported_reason(generator.model.config):
        raise EngineError(f"REPLYLOOP_SERVE_ENGINE=llamacpp cannot serve {label}: {reason} (use torch)")
    ctype = settings.serve_compute_type
    weights = llamacpp_engine.DEFAULT_WEIGHTS if ctype == "auto" else llamacpp_engine.WEIGHTS.get(ctype)
    if weights is None:
        raise EngineError(f"REPLYLOOP_SERVE_COMPUTE_TYPE={ctype!r} is not one of auto, "
                          f"{', '.join(llamacpp_engine.WEIGHTS)} for the llama.cpp engine")
    paths = llamacpp_engine.convert(settings, base_model_sha, adapter_dir, generator, weights, label=label)
    return llamacpp_engine.LlamaCppEngine(generator, paths["model"], lora_path=paths["lora"], weights=weights,
                                          threads=settings.serve_threads, max_batch=settings.serve_max_batch,
                                          max_prompt_tokens=settings.serve_max_prompt_tokens)


def load_engine(settings: Settings, version: str) -> Engine:
    """The engine the settings ask for; 'auto' is llama.cpp for Llama models on CPU when installed, else
    the torch engine (chosen by measurement, docs/api.md)."""
    choice = _choice(settings)
    if choice == "ctranslate2":
        files = registry.download_version(settings, version)
        return _ct2_engine(settings, convert_version(settings, files), version_config(files))
    if choice in ("hf", "torch"):
        return _by_choice(settings, choice, registry.load_version(settings, version), "", None, "")
    files = registry.download_version(settings, version)
    return _by_choice(settings, choice, registry.load_version(settings, version), files.base_model_sha,
                      files.adapter_dir, f"version {files.version}")


def load_base_engine(settings: Settings, base_model_sha: str, config: dict) -> Engine:
    """The base model (no adapter) in the same engine, decoding rules and prompt as a version; `config` is
    the pyfunc config of the version it is compared with (system prompt, max_new_tokens)."""
    choice = _choice(settings)
    if choice == "ctranslate2":
        folder = convert_model(settings, base_model_sha, None, label=f"base model {base_model_sha[:16]}")
        return _ct2_engine(settings, folder, config)
    from replyloop.modeling import ReplyGenerator, base_model_by_hash, load_base

    model, tok = load_base(base_model_by_hash(settings, base_model_sha))
    generator = ReplyGenerator(model, tok, system_prompt=_system_prompt(settings, config),
                               max_new_tokens=_max_new(settings, config))
    return _by_choice(settings, choice, generator, base_model_sha, None, f"base model {base_model_sha[:16]}")


def _system_prompt(settings: Settings, config: dict) -> str:
    return config.get("system_prompt") or settings.rendered_system_prompt()


def _max_new(settings: Settings, config: dict) -> int:
    return int(config.get("max_new_tokens", settings.max_new_tokens))


def _ct2_engine(settings: Settings, folder: Path, config: dict) -> CT2Engine:
    max_new = _max_new(settings, config)
    context = json.loads((folder / "engine.json").read_text())["context"]
    return CT2Engine(folder, system_prompt=_system_prompt(settings, config), max_new_tokens=max_new,
                     max_prompt_tokens=min(settings.serve_max_prompt_tokens, context - max_new),
                     compute_type=settings.serve_compute_type, threads=settings.serve_threads)
