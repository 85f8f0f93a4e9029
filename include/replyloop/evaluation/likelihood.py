"""Log-likelihood of target texts after prompts, under a causal LM (teacher forcing): the one loop behind
the metric modules that read the model instead of its replies (perplexity, reply_fit, rude_likelihood).
"""

from __future__ import annotations


def target_ids(tokenizer, text: str) -> list[int]:
    """A reply's token ids as the chat builder continues a prompt with it (no special tokens; an empty reply
    is the end-of-turn token, so that every target has at least one token)."""
    return tokenizer(text, add_special_tokens=False)["input_ids"] or [tokenizer.eos_token_id]


def summed_nll(model, tokenizer, pairs: list[tuple[list[int], list[int]]],
               batch_size: int = 8) -> list[tuple[float, int]]:
    """(summed negative log-likelihood in nats, token count) of each target after its context, for pairs of
    (context ids, target ids). Batched longest first (right padding, masked) to limit padding; the order of
    the output is the order of `pairs`."""
    import torch

    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    order = sorted(range(len(pairs)), key=lambda n: -(len(pairs[n][0]) + len(pairs[n][1])))
    out: list[tuple[float, int]] = [(0.0, 0)] * len(pairs)
    with torch.inference_mode():
        for start in range(0, len(order), batch_size):
            chunk = order[start : start + batch_size]
            seqs = [list(pairs[n][0]) + list(pairs[n][1]) for n in chunk]
            ids = torch.full((len(chunk), max(map(len, seqs))), pad, dtype=torch.long)
            mask = torch.zeros_like(ids)
            labels = torch.full_like(ids, -100)
            for row, (n, seq) in enumerate(zip(chunk, seqs)):
                ids[row, : len(seq)] = torch.tensor(seq)
                mask[row, : len(seq)] = 1
                labels[row, len(pairs[n][0]) : len(seq)] = ids[row, len(pairs[n][0]) : len(seq)]
            logits = model(input_ids=ids.to(model.device), attention_mask=mask.to(model.device)).logits.float()
            targets = labels[:, 1:].to(model.device)
            loss = torch.nn.functional.cross_entropy(logits[:, :-1].transpose(1, 2), targets, ignore_index=-100,
                                                     reduction="none")
            counts = (targets != -100).sum(1)
            for row, n in enumerate(chunk):
                out[n] = (float(loss[row].sum()), int(counts[row]))
    return out
