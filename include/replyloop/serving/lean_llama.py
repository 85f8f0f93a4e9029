"""A lean forward pass of a Llama-architecture model for decoding: the model's own weights, a preallocated KV
cache, no per-step framework work.

transformers' forward spends most of a decoding step on work that does not read weights: building the
attention mask and position ids, concatenating the KV cache, dispatching modules and output objects (measured
in docs/api.md). `LeanLlama` runs the same arithmetic as `LlamaForCausalLM` (RMSNorm in float32, rotary
embeddings of the default type, attention through `scaled_dot_product_attention`, SiLU MLP) on the same
tensors, with three changes that do not change what is computed: q/k/v and gate/up each in one matrix
product over concatenated weights, a KV cache written in place into preallocated tensors, and the LM head
only for the positions whose logits are asked for. It refuses models it does not mirror
(`supported` says why), and the engine then keeps transformers' `generate`.
"""

from __future__ import annotations

from dataclasses import dataclass


def unsupported_reason(model) -> str | None:
    """Why `LeanLlama` cannot mirror `model` (None when it can)."""
    cfg = model.config
    if type(model).__name__ != "LlamaForCausalLM":
        return f"architecture {type(model).__name__} is not LlamaForCausalLM"
    if (getattr(cfg, "rope_parameters", None) or {}).get("rope_type", "default") != "default":
        return "rotary embeddings other than the default type"
    if cfg.hidden_act != "silu":
        return f"activation {cfg.hidden_act}"
    if getattr(cfg, "attention_bias", False) or getattr(cfg, "mlp_bias", False):
        return "bias terms in attention or MLP"
    if getattr(cfg, "_attn_implementation", "sdpa") not in ("sdpa", "eager", None):
        return f"attention implementation {cfg._attn_implementation}"
    return None


@dataclass
class KVCache:
    """Keys and values of every layer: [layers, batch, kv heads, capacity, head dim]; `length` columns used."""

    k: object
    v: object
    length: int = 0


class LeanLlama:
    """Forward passes of a `LlamaForCausalLM` over a preallocated KV cache. The embeddings, norms and head are
    the model's own tensors; every layer's projections are held again, transposed (q/k/v and gate/up
    concatenated): about the model's non-embedding weights once more in memory."""

    def __init__(self, model):
        import torch

        reason = unsupported_reason(model)
        if reason:
            raise ValueError(f"LeanLlama cannot run this model: {reason}")
        cfg = model.config
        self.heads = cfg.num_attention_heads
        self.kv_heads = cfg.num_key_value_heads
        self.head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // self.heads
        self.eps = cfg.rms_norm_eps
        self.scaling = self.head_dim ** -0.5
        self.device, self.dtype = model.device, model.dtype
        self.embed = model.model.embed_tokens.weight
        self.norm = model.model.norm.weight
        self.head = model.lm_head.weight
        self.layers = []
        with torch.no_grad():
            for layer in model.model.layers:
                a, m = layer.self_attn, layer.mlp
                self.layers.append((  # matrices transposed: x @ w is faster than F.linear for a few rows (MKL)
                    layer.input_layernorm.weight,
                    torch.cat([a.q_proj.weight, a.k_proj.weight, a.v_proj.weight]).t().contiguous(),
                    a.o_proj.weight.t().contiguous(),
                    layer.post_attention_layernorm.weight,
                    torch.cat([m.gate_proj.weight, m.up_proj.weight]).t().contiguous(),
                    m.down_proj.weight.t().contiguous(),
                ))
        rot = model.model.rotary_emb
        positions = torch.arange(cfg.max_position_embeddings, device=self.device)
        freqs = positions[:, None].float() * rot.inv_freq.to(device=self.device, dtype=torch.float)[None, :]
        emb = torch.cat((freqs, freqs), dim=-1)  # as LlamaRotaryEmbedding computes them, for every position
        self.cos = (emb.cos() * rot.attention_scaling).to(self.dtype)
        self.sin = (emb.sin() * rot.attention_scaling).to(self.dtype)

    def new_cache(self, batch: int, capacity: int) -> KVCache:
        import torch

        shape = (len(self.layers), batch, self.kv_heads, capacity, self.head_dim)
        # zeros, not empty: masked columns still enter attention's weighted sum (with weight 0; NaN * 0 = NaN)
        return KVCache(torch.zeros(shape, device=self.device, dtype=self.dtype),
                       torch.zeros(shape, device=self.device, dtype=self.dtype))

    def _rms(self, x, weight):
        import torch

        xf = x.to(torch.float32)
        xf = xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + self.eps)
        return weight * xf.to(x.dtype)

    @staticmethod
    def _rotate(x, cos, sin):
        import torch

        half = x.shape[-1] // 2
        return x * cos + torch.cat((-x[..., half:], x[..., :half]), dim=-1) * sin

    def forward(self, ids, positions, cache: KVCache, mask, *, select=None):
        """Next-token logits after the last new token of each sequence: [batch, vocab]; with `select` (for a
        batch of one), after each of the new tokens at those indices: [len(select), vocab].

        ids, positions: [batch, new] token ids and their rotary positions; they are written to cache columns
        [cache.length, cache.length + new). mask: bool [batch, 1, new, cache.length + new], True where a new
        token attends to a column (every query must attend to at least one column)."""
        import torch
        import torch.nn.functional as F

        b, t = ids.shape
        start, end = cache.length, cache.length + t
        h, kvh, d = self.heads, self.kv_heads, self.head_dim
        rep = h // kvh
        cos, sin = self.cos[positions][:, None], self.sin[positions][:, None]  # [b, 1, t, d]
        # once for all layers: an additive mask (sdpa would convert a boolean one in every layer)
        mask = torch.zeros(mask.shape, dtype=self.dtype, device=self.device).masked_fill_(~mask, float("-inf"))
        x = F.embedding(ids, self.embed)
        for i, (ln1, qkv_w, o_w, ln2, gu_w, down_w) in enumerate(self.layers):
            qkv = self._rms(x, ln1) @ qkv_w
            q, k, v = qkv.split((h * d, kvh * d, kvh * d), dim=-1)
            q = self._rotate(q.view(b, t, h, d).transpose(1, 2), cos, sin)
            cache.k[i, :, :, start:end] = self._rotate(k.view(b, t, kvh, d).transpose(1, 2), cos, sin)
            cache.v[i, :, :, start:end] = v.view(b, t, kvh, d).transpose(1, 2)
            keys, values = cache.k[i, :, :, :end], cache.v[i, :, :, :end]
            if t == 1:  # one query per sequence: the heads sharing a kv head become its queries (no copy)
                attn = F.scaled_dot_product_attention(q.reshape(b, kvh, rep, d), keys, values, attn_mask=mask,
                                                      scale=self.scaling)
            else:
                keys = keys[:, :, None].expand(b, kvh, rep, end, d).reshape(b, h, end, d)
                values = values[:, :, None].expand(b, kvh, rep, end, d).reshape(b, h, end, d)
                attn = F.scaled_dot_product_attention(q, keys, values, attn_mask=mask, scale=self.scaling)
            x = x + attn.reshape(b, h, t, d).transpose(1, 2).reshape(b, t, h * d) @ o_w
            gate, up = (self._rms(x, ln2) @ gu_w).chunk(2, dim=-1)
            x = x + (F.silu(gate) * up) @ down_w
        cache.length = end
        last = x[:, -1] if select is None else x[0, select]
        return F.linear(self._rms(last, self.norm), self.head)
