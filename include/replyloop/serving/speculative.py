"""Speculative greedy decoding for a lone request: a cheaper copy of the model drafts, the model decides.

The draft (the same merged model in bf16, or int8 dynamically quantised) proposes up to `k` tokens one at a
time; the served model (float32) then forwards them all at once and keeps the drafted tokens up to the first
one it would not have chosen itself, plus its own next token. Every kept token is the served model's greedy
choice under the reference decoding rule (`modeling.decoding_rule`: repetition penalty over prompt
+ reply, no repeated n-grams, suppressed '@' tokens), applied to its logits at each position with the
sequence up to that position, exactly as `generate` applies them; the draft only decides how many tokens one
weight read of the served model yields. What can differ from the reference is floating-point rounding: the
served model computes several positions in one matrix product instead of one at a time (measured agreement
in docs/api.md).

Both models start from their cached system-prompt prefix; their caches are cropped back after each round.
transformers' own assisted decoding (`generate(assistant_model=...)`) ignores a prefilled cache (measured:
wrong tokens), hence this loop.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class Stats:
    rounds: int = 0
    drafted: int = 0
    accepted: int = 0


class SpeculativeDecoder:
    """Greedy decoding of one prompt by `target`, drafted by `draft`; both given their prefix caches."""

    def __init__(self, target, draft, rule, *, eos_ids: set[int], max_new_tokens: int, k: int = 6):
        self.target = target
        self.draft = draft
        self.rule = rule
        self.eos_ids = eos_ids
        self.max_new = max_new_tokens
        self.k = k
        self.stats = Stats()

    def _choose(self, seq, logits):
        """The rule's greedy token after `seq` (1 x n ids) given the model's raw next-token logits."""
        return int(self.rule(seq, logits.float()).argmax(-1))

    def decode(self, ids: list[int], prefix_len: int, target_cache, draft_cache) -> list[int]:
        """Reply tokens (without EOS) for the prompt `ids`, whose first `prefix_len` tokens are in both caches."""
        import torch

        dev = self.target.device
        seq = torch.tensor([ids], device=dev)
        t_len = d_len = prefix_len  # tokens each cache holds (always a prefix of seq)
        out: list[int] = []
        with torch.inference_mode():
            if len(ids) - 1 > t_len:  # the prompt minus its last token, whose logits start the reply
                self.target(seq[:, t_len:-1], past_key_values=target_cache, use_cache=True, logits_to_keep=1)
                t_len = len(ids) - 1
            while len(out) < self.max_new:
                # 1. draft up to k tokens (the draft first catches up with the tokens it has not seen)
                budget = min(self.k, self.max_new - len(out) - 1)
                drafted: list[int] = []
                cur = seq
                for _ in range(budget):
                    logits = self.draft(cur[:, d_len:], past_key_values=draft_cache, use_cache=True,
                                        logits_to_keep=1).logits[:, -1]
                    d_len = cur.shape[1]
                    tok = self._choose(cur, logits)
                    drafted.append(tok)
                    cur = torch.cat([cur, torch.tensor([[tok]], device=dev)], dim=1)
                    if tok in self.eos_ids:
                        break
                # 2. the target forwards its pending token(s) and the drafts at once
                ext = torch.cat([seq, torch.tensor([drafted], device=dev, dtype=seq.dtype)], dim=1)
                logits = self.target(ext[:, t_len:], past_key_values=target_cache, use_cache=True,
                                     logits_to_keep=len(drafted) + 1).logits[0]
                t_len = ext.shape[1]
                new: list[int] = []
                for i in range(len(drafted) + 1):
                    tok = self._choose(ext[:, : seq.shape[1] + i], logits[i][None])
                    new.append(tok)
                    if i == len(drafted) or tok != drafted[i] or tok in self.eos_ids:
                        break
                self.stats.rounds += 1
                self.stats.drafted += len(drafted)
                self.stats.accepted += len(new) - 1
                # 3. keep what the target chose; crop both caches back to tokens of the new sequence
                seq = torch.cat([seq, torch.tensor([new], device=dev, dtype=seq.dtype)], dim=1)
                keep = seq.shape[1] - 1  # the last chosen token is pending for both models
                if t_len > keep:
                    target_cache.crop(keep - t_len)
                    t_len = keep
                if d_len > keep:
                    draft_cache.crop(keep - d_len)
                    d_len = keep
                for tok in new:
                    if tok in self.eos_ids:
                        return out
                    out.append(tok)
        return out[: self.max_new]
