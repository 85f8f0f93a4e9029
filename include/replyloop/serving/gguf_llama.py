"""GGUF files of Llama-architecture models for llama.cpp, written with the `gguf` package.

`write_model` writes a Hugging Face `LlamaForCausalLM` (for serving: the version's merged weights) in one
weight type; `write_lora` writes a peft LoRA adapter as a llama.cpp LoRA adapter file, applied unmerged on
top of a base model's GGUF. Tensor names come from gguf's own name map. llama.cpp's Llama graph applies
rotary embeddings to interleaved pairs where transformers rotates the two halves of each head, so the
q and k projections' output rows are permuted here (`_rope_rows`), as every Llama converter does.

Only the vocabulary's token strings and types are written (no pre-tokenizer): replyloop tokenises and
detokenises with the version's Hugging Face tokenizer (`replyloop.chat`), llama.cpp only sees token ids.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

# Weight types of the 2-D matrices; norms stay float32 (as llama.cpp's converters keep them).
WEIGHT_TYPES = {"f32": "F32", "f16": "F16", "bf16": "BF16", "q8_0": "Q8_0", "q4_1": "Q4_1"}
FILE_TYPES = {"f32": "ALL_F32", "f16": "MOSTLY_F16", "bf16": "MOSTLY_BF16", "q8_0": "MOSTLY_Q8_0", "q4_1": "MOSTLY_Q4_1"}


class GGUFError(ValueError):
    """A model or adapter cannot be written as GGUF (not a Llama, an unsupported adapter kind)."""


def unsupported_reason(config) -> str | None:
    """Why a transformers config cannot be written as a llama.cpp Llama (None: it can)."""
    if getattr(config, "model_type", None) != "llama":
        return f"model type {getattr(config, 'model_type', None)!r} is not 'llama'"
    if getattr(config, "rope_scaling", None) not in (None, {}) and (config.rope_scaling or {}).get("rope_type",
                                                                                                   "default") != "default":
        return "rope scaling is not written"
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
    if head_dim * config.num_attention_heads != config.hidden_size or getattr(config, "attention_bias", False) \
            or getattr(config, "mlp_bias", False):
        return "head sizes or biases that the writer does not handle"
    return None


def _rope_rows(w: np.ndarray, heads: int) -> np.ndarray:
    """Rows of a q or k projection reordered from halves-rotation to interleaved-pairs rotation per head."""
    return w.reshape(heads, 2, w.shape[0] // heads // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def _rope_heads(hf_name: str, config) -> int | None:
    if hf_name.endswith("self_attn.q_proj.weight"):
        return config.num_attention_heads
    if hf_name.endswith("self_attn.k_proj.weight"):
        return config.num_key_value_heads
    return None


def _name_map(config):
    import gguf

    return gguf.get_tensor_name_map(gguf.MODEL_ARCH.LLAMA, config.num_hidden_layers)


def _gguf_name(names, hf_name: str) -> str:
    name = names.get_name(hf_name, try_suffixes=(".weight", ".bias"))
    if name is None:
        raise GGUFError(f"no GGUF name for tensor {hf_name}")
    return name


def _header(writer, config) -> None:
    head_dim = config.hidden_size // config.num_attention_heads
    writer.add_context_length(int(config.max_position_embeddings))
    writer.add_embedding_length(config.hidden_size)
    writer.add_block_count(config.num_hidden_layers)
    writer.add_feed_forward_length(config.intermediate_size)
    writer.add_head_count(config.num_attention_heads)
    writer.add_head_count_kv(config.num_key_value_heads)
    writer.add_layer_norm_rms_eps(float(config.rms_norm_eps))
    writer.add_rope_freq_base(float(getattr(config, "rope_theta", None)
                                    or (getattr(config, "rope_parameters", None) or {}).get("rope_theta", 10000.0)))
    writer.add_rope_dimension_count(head_dim)
    writer.add_vocab_size(config.vocab_size)


def _vocabulary(writer, tok, config) -> None:
    import gguf

    special = {i for i, t in tok.added_tokens_decoder.items() if t.special}
    n = config.vocab_size
    tokens = [tok.convert_ids_to_tokens(i) or f"[PAD{i}]" for i in range(n)]
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre("default")
    writer.add_token_list(tokens)
    writer.add_token_types([gguf.TokenType.CONTROL if i in special else gguf.TokenType.NORMAL for i in range(n)])
    writer.add_token_merges(_merges(tok))
    if tok.eos_token_id is not None:
        writer.add_eos_token_id(tok.eos_token_id)
    if tok.bos_token_id is not None:
        writer.add_bos_token_id(tok.bos_token_id)
    writer.add_add_bos_token(False)


def _merges(tok) -> list[str]:
    """The byte-level BPE merges of a fast tokenizer ("a b" strings), which llama.cpp needs to load a gpt2 vocab."""
    model = json.loads(tok.backend_tokenizer.to_str())["model"]
    if model.get("type") != "BPE":
        raise GGUFError(f"the tokenizer is {model.get('type')!r}, not byte-level BPE: not written for llama.cpp")
    return [m if isinstance(m, str) else " ".join(m) for m in model["merges"]]


def write_model(model, tok, path: Path, weights: str = "f32") -> Path:
    """A merged `LlamaForCausalLM` (float weights) as a GGUF file with 2-D weights in `weights`
    (one of WEIGHT_TYPES); tied input/output embeddings are written once."""
    import gguf

    if weights not in WEIGHT_TYPES:
        raise GGUFError(f"weight type {weights!r} is not one of {', '.join(WEIGHT_TYPES)}")
    config = model.config
    if reason := unsupported_reason(config):
        raise GGUFError(f"cannot write this model for llama.cpp: {reason}")
    qtype = getattr(gguf.GGMLQuantizationType, WEIGHT_TYPES[weights])
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_type(gguf.GGUFType.MODEL)
    writer.add_name("replyloop merged model")
    _header(writer, config)
    writer.add_file_type(getattr(gguf.LlamaFileType, FILE_TYPES[weights]))
    writer.add_quantization_version(gguf.GGML_QUANT_VERSION)
    _vocabulary(writer, tok, config)
    names = _name_map(config)
    tied = bool(getattr(config, "tie_word_embeddings", False))
    for hf_name, tensor in model.state_dict().items():
        if tied and hf_name == "lm_head.weight":
            continue
        data = tensor.detach().float().cpu().numpy()
        if (heads := _rope_heads(hf_name, config)) is not None:
            data = _rope_rows(data, heads)
        if data.ndim == 1 or qtype == gguf.GGMLQuantizationType.F32:
            writer.add_tensor(_gguf_name(names, hf_name), np.ascontiguousarray(data, dtype=np.float32))
        elif qtype == gguf.GGMLQuantizationType.F16:
            writer.add_tensor(_gguf_name(names, hf_name), data.astype(np.float16))
        else:
            writer.add_tensor(_gguf_name(names, hf_name), gguf.quants.quantize(data, qtype), raw_dtype=qtype)
    _close(writer)
    return path


def _close(writer) -> None:
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


def lora_alpha(adapter_config: dict) -> float:
    """The `adapter.lora.alpha` that makes llama.cpp's scale (alpha / rank) peft's (alpha / rank, or
    alpha / sqrt(rank) with rsLoRA)."""
    r, alpha = adapter_config["r"], adapter_config.get("lora_alpha", 8)
    return alpha * math.sqrt(r) if adapter_config.get("use_rslora") else float(alpha)


def write_lora(adapter_dir: Path, config, path: Path) -> Path:
    """A peft LoRA adapter (plain LoRA, one rank and alpha) as a llama.cpp LoRA adapter GGUF (float32)."""
    import gguf
    from safetensors.numpy import load_file

    cfg = json.loads((adapter_dir / "adapter_config.json").read_text())
    if cfg.get("use_dora") or cfg.get("rank_pattern") or cfg.get("alpha_pattern") or cfg.get("modules_to_save"):
        raise GGUFError("only plain LoRA adapters (one rank and alpha, no DoRA, no saved modules) are written")
    tensors = load_file(str(adapter_dir / "adapter_model.safetensors"))
    names = _name_map(config)
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_type(gguf.GGUFType.ADAPTER)
    writer.add_string(gguf.Keys.Adapter.TYPE, "lora")
    writer.add_float32(gguf.Keys.Adapter.LORA_ALPHA, lora_alpha(cfg))
    unwritten = sorted(k for k in tensors if ".lora_A." not in k and ".lora_B." not in k)
    if unwritten:  # e.g. lora_embedding_A/B: leaving them out would serve other weights than the version's
        raise GGUFError(f"adapter {adapter_dir} holds tensors the llama.cpp adapter writer does not handle: "
                        f"{', '.join(unwritten[:3])}")
    for key in sorted(tensors):
        if ".lora_A." not in key:
            continue
        module = key.split(".lora_A.")[0].removeprefix("base_model.model.")
        a, b = tensors[key].astype(np.float32), tensors[key.replace(".lora_A.", ".lora_B.")].astype(np.float32)
        weight = module + ".weight"
        if (heads := _rope_heads(weight, config)) is not None:
            b = _rope_rows(b, heads)  # B makes the output rows, which the base's rows' order follows
        base = _gguf_name(names, weight)
        writer.add_tensor(base + ".lora_a", np.ascontiguousarray(a))
        writer.add_tensor(base + ".lora_b", np.ascontiguousarray(b))
    _close(writer)
    return path
