"""The reference generator made fast: same model, same `generate` call, same decoding rule.

`TorchEngine` wraps the registered version's `modeling.ReplyGenerator` (LoRA merged into the base, as the
pyfunc loads it) and decodes a micro-batch in one `generate` call with the generator's own decoding
arguments (greedy, repetition penalty 1.1 and no repeated 4-grams over prompt + reply, no '@' token), so
the penalties see the whole prompt by construction. What it adds:

- the system prompt's KV cache, computed once per version: every prompt starts with the same tokens
  (system prompt + the opening of the first turn), so only the conversation part is forwarded per request;
- one prefill for a batch of prompts of any length: the cached prefix, then each row's conversation part
  right-aligned after padding that the attention mask hides (positions follow the mask, so each row is
  computed as if it had no padding). The pad token is the end-of-sequence token, which every prompt
  already holds, so the padding adds nothing that the repetition penalty could see;
- weights in bf16 where the device computes bf16 natively (opt-in on CPU, see `docs/api.md`);
- for Llama-architecture models, a lean decoding loop instead of `generate` (`lean_llama.LeanLlama`: the
  same arithmetic on a preallocated KV cache, the rows' conversation parts prefilled packed, no padding
  computed) that does what `generate` does with the same ids, mask, positions and logits processors.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

from replyloop.chat import prompt_ids
from replyloop.serving.lean_llama import KVCache, LeanLlama, unsupported_reason


@dataclass(frozen=True)
class Layout:
    """A batch laid out after a shared cached prefix: token ids (prefix included) and the attention mask."""

    input_ids: list[list[int]]
    attention_mask: list[list[int]]


def common_prefix(rows: list[list[int]]) -> int:
    """Length of the token prefix all rows share."""
    n = min(map(len, rows))
    for i in range(n):
        if any(r[i] != rows[0][i] for r in rows):
            return i
    return n


def layout_after_prefix(prefix: list[int], rows: list[list[int]], pad_id: int) -> Layout:
    """Rows that start with `prefix`: prefix, left padding (masked), then each row's remaining tokens.

    Every row keeps at least one token after the prefix (the cached prefix must stop before the last
    prompt token, whose logits start the reply)."""
    p = len(prefix)
    if any(r[:p] != prefix or len(r) <= p for r in rows):
        raise ValueError("every row must start with the prefix and go on after it")
    width = max(len(r) for r in rows) - p
    ids, mask = [], []
    for r in rows:
        pad = width - (len(r) - p)
        ids.append(prefix + [pad_id] * pad + r[p:])
        mask.append([1] * p + [0] * pad + [1] * (len(r) - p))
    return Layout(ids, mask)


def _groups(lengths: list[int], budget: int) -> list[list[int]]:
    """Consecutive indices grouped so that each group's lengths sum to at most `budget` (a longer one alone)."""
    groups, total = [[]], 0
    for i, n in enumerate(lengths):
        if groups[-1] and total + n > budget:
            groups.append([])
            total = 0
        groups[-1].append(i)
        total += n
    return groups


class TorchEngine:
    """A version's ReplyGenerator with a cached system-prompt prefix and one `generate` per micro-batch."""

    name = "torch"

    def __init__(self, generator, *, dtype=None, max_prompt_tokens: int | None = None):
        import torch

        self.gen = generator
        if dtype is not None and dtype != generator.model.dtype:
            generator.model.to(dtype)
        self.model = generator.model
        self.tok = generator.tok
        self.device = str(self.model.device)
        self.dtype = str(self.model.dtype).removeprefix("torch.")
        self.max_prompt_tokens = min(max_prompt_tokens or generator.max_prompt_tokens, generator.max_prompt_tokens)
        self.prefix = self._system_prefix()
        with torch.inference_mode():
            ids = torch.tensor([self.prefix], device=self.model.device)
            self._prefix_cache = self.model(ids, use_cache=True).past_key_values
        self.lean = None if unsupported_reason(self.model) else LeanLlama(self.model)
        self._lean_prefix = self._lean_prefill_prefix() if self.lean is not None else None
        self._lock = threading.Lock()  # one generate at a time per model (the batcher has one worker anyway)
        self.speculative = None  # a lone request's decoder with a cheaper draft model (use_draft), or None

    def use_draft(self, kind: str, k: int = 6) -> None:
        """Decode lone requests speculatively: a `kind` ('bfloat16' or 'int8') copy of the model drafts up to
        `k` tokens, the model keeps those it would have chosen (`speculative.SpeculativeDecoder`)."""
        import copy

        import torch

        from replyloop.serving.speculative import SpeculativeDecoder

        draft = copy.deepcopy(self.model)
        if kind == "bfloat16":
            draft = draft.to(torch.bfloat16)
        elif kind == "int8":
            draft = torch.ao.quantization.quantize_dynamic(draft, {torch.nn.Linear}, dtype=torch.qint8)
        else:
            raise ValueError(f"draft kind {kind!r} is not one of bfloat16, int8")
        with torch.inference_mode():
            self._draft_prefix = draft(torch.tensor([self.prefix], device=self.model.device),
                                       use_cache=True).past_key_values
        kwargs = self.gen.generate_kwargs()
        self.draft_kind = kind
        self.speculative = SpeculativeDecoder(self.model, draft, kwargs["logits_processor"],
                                              eos_ids=self.eos_ids(), max_new_tokens=kwargs["max_new_tokens"], k=k)

    def eos_ids(self) -> set[int]:
        """Tokens that end a reply: the tokenizer's and the generation config's end-of-sequence tokens."""
        return set(self.gen.end_of_turn_ids())

    def _system_prefix(self) -> list[int]:
        """The tokens every prompt starts with (system prompt and the opening of the first turn), minus one."""
        probes = [[{"role": "customer", "text": t}] for t in ("hello", "Where is my parcel?")]
        rows = [prompt_ids(self.tok, c, self.gen.system_prompt, self.max_prompt_tokens) for c in probes]
        return rows[0][: max(0, common_prefix(rows) - 1)]

    def _cache_for(self, batch: int, cache=None):
        from replyloop.modeling import repeat_cache

        return repeat_cache(cache or self._prefix_cache, batch, self.model.config)

    def generate(self, conversations: list[list[dict]]) -> list:
        from replyloop.serving.engine import Generation

        rows = [prompt_ids(self.tok, c, self.gen.system_prompt, self.max_prompt_tokens) for c in conversations]
        p = len(self.prefix)
        cached = [i for i, r in enumerate(rows) if p and r[:p] == self.prefix and len(r) > p]
        plain = sorted(set(range(len(rows))) - set(cached))
        out: dict[int, list[int]] = {}
        with self._lock:
            if len(cached) == 1 and self.speculative is not None:
                out[cached[0]] = self.speculative.decode(rows[cached[0]], p, self._cache_for(1),
                                                         self._cache_for(1, self._draft_prefix))
            elif cached:
                out.update(zip(cached, self._decode_any([rows[i] for i in cached], with_prefix=True), strict=True))
            if plain:  # a prompt cut so hard that the system prompt's start is gone: no cached prefix
                out.update(zip(plain, self._decode_any([rows[i] for i in plain], with_prefix=False), strict=True))
        texts = [self.tok.decode(out[i], skip_special_tokens=True).strip() for i in range(len(rows))]
        return [Generation(t, len(out[i])) for i, t in enumerate(texts)]

    def _decode_any(self, rows: list[list[int]], *, with_prefix: bool) -> list[list[int]]:
        if self.lean is not None:
            return self._decode_lean(rows, with_prefix=with_prefix)
        return self._decode(rows, with_prefix=with_prefix)

    def _lean_prefill_prefix(self):
        """The system prefix's keys and values in the lean decoder's cache layout ([layers, 1, kv heads, p, head
        dim]), taken from the transformers cache of the same prefix (no second forward pass)."""
        import torch

        if not self.prefix:
            return None
        layers = self._prefix_cache.layers
        return KVCache(torch.stack([layer.keys for layer in layers]), torch.stack([layer.values for layer in layers]),
                       len(self.prefix))

    def _decode_lean(self, rows: list[list[int]], *, with_prefix: bool) -> list[list[int]]:
        """Greedy decoding under the version's decoding rule with the lean forward pass: what `generate` does
        with the same ids, mask, positions and logits processors (finished rows get the pad token)."""
        import torch

        dev = self.model.device
        prefix = self.prefix if with_prefix else []
        lay = layout_after_prefix(prefix, rows, self.tok.pad_token_id)
        b, width = len(rows), len(lay.input_ids[0])
        max_new = self.gen.max_new_tokens
        rule = self.gen.decoding_rule()
        eos_ids = self.eos_ids()
        eos = torch.tensor(sorted(eos_ids), device=dev)
        pad = self.tok.pad_token_id
        seq = torch.full((b, width + max_new), pad, dtype=torch.long, device=dev)
        seq[:, :width] = torch.tensor(lay.input_ids, device=dev)
        valid = torch.zeros((b, width + max_new), dtype=torch.bool, device=dev)
        valid[:, :width] = torch.tensor(lay.attention_mask, device=dev, dtype=torch.bool)
        with torch.inference_mode():
            cache = self.lean.new_cache(b, width + max_new)
            logits = self._prefill_lean(rows, len(prefix), width, cache)
            done = torch.zeros(b, dtype=torch.bool, device=dev)
            last = torch.tensor([len(r) - 1 for r in rows], device=dev)  # position of each row's last token
            for step in range(max_new):
                n = width + step
                scores = rule(seq[:, :n], logits.float())
                tok = torch.where(done, pad, scores.argmax(-1))
                seq[:, n] = tok
                done |= torch.isin(tok, eos)
                if step == max_new - 1 or bool(done.all()):
                    break
                valid[:, n] = True
                last = last + 1
                logits = self.lean.forward(tok[:, None], last[:, None], cache, valid[:, None, None, : n + 1])
        return [_until_end(row, eos_ids) for row in seq[:, width:].tolist()]

    def _prefill_lean(self, rows: list[list[int]], p: int, width: int, cache, budget: int = 1024):
        """Forward each row's tokens after the cached prefix (p tokens) and return the logits after each row's
        last token [rows, vocab]. Rows are packed into one sequence (no padding computed; each token attends
        to the prefix and to its own row), up to `budget` tokens at a time; their keys and values land in the
        batch cache right-aligned before column `width`, as `layout_after_prefix` lays the rows out."""
        import torch

        dev = self.model.device
        if p:
            cache.k[:, :, :, :p] = self._lean_prefix.k
            cache.v[:, :, :, :p] = self._lean_prefix.v
        out = []
        for group in _groups([len(r) - p for r in rows], budget):
            lens = [len(rows[i]) - p for i in group]
            total = sum(lens)
            scratch = self.lean.new_cache(1, p + total)
            if p:
                scratch.k[:, :, :, :p] = self._lean_prefix.k
                scratch.v[:, :, :, :p] = self._lean_prefix.v
                scratch.length = p
            ids = torch.tensor([[t for i in group for t in rows[i][p:]]], device=dev)
            positions = torch.tensor([[p + j for n in lens for j in range(n)]], device=dev)
            segment = torch.repeat_interleave(torch.arange(len(group), device=dev), torch.tensor(lens, device=dev))
            idx = torch.arange(total, device=dev)
            own = (segment[:, None] == segment[None, :]) & (idx[None, :] <= idx[:, None])
            mask = torch.cat([torch.ones(total, p, dtype=torch.bool, device=dev), own], dim=1)[None, None]
            ends = torch.tensor(lens, device=dev).cumsum(0)
            out.append(self.lean.forward(ids, positions, scratch, mask, select=ends - 1))
            for i, n, e in zip(group, lens, ends.tolist(), strict=True):
                cache.k[:, i, :, width - n: width] = scratch.k[:, 0, :, p + e - n: p + e]
                cache.v[:, i, :, width - n: width] = scratch.v[:, 0, :, p + e - n: p + e]
        cache.length = width
        return torch.cat(out)

    def _decode(self, rows: list[list[int]], *, with_prefix: bool) -> list[list[int]]:
        import torch

        prefix = self.prefix if with_prefix else []
        lay = layout_after_prefix(prefix, rows, self.tok.pad_token_id)
        kwargs = self.gen.generate_kwargs()
        if with_prefix:
            kwargs["past_key_values"] = self._cache_for(len(rows))
        with torch.inference_mode():
            gen = self.model.generate(input_ids=torch.tensor(lay.input_ids, device=self.model.device),
                                      attention_mask=torch.tensor(lay.attention_mask, device=self.model.device),
                                      **kwargs)
        eos_ids = self.eos_ids()
        return [_until_end(row, eos_ids) for row in gen[:, len(lay.input_ids[0]):].tolist()]


def _until_end(row: list[int], eos_ids: set[int]) -> list[int]:
    """A generated row up to (without) its first end-of-turn token: both decoding paths cut replies here."""
    return row[: next((i for i, t in enumerate(row) if t in eos_ids), len(row))]
