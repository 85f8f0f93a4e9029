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
    (context ids, target ids); the output is in the order of `pairs`. Targets that share a context are scored
    after one forward pass of that context (its KV cache, copied per batch of targets); the other pairs are
    batched longest first (right padding, masked)."""
    by_context: dict[tuple[int, ...], list[int]] = {}
    for n, (context, _) in enumerate(pairs):
        by_context.setdefault(tuple(context), []).append(n)
    out: list[tuple[float, int]] = [(0.0, 0)] * len(pairs)
    alone = [group[0] for group in by_context.values() if len(group) == 1]
    for n, result in zip(alone, _full_sequences(model, tokenizer, [pairs[n] for n in alone], batch_size)):
        out[n] = result
    for context, group in by_context.items():
        if len(group) > 1:
            for n, result in zip(group, _after_shared_context(model, tokenizer, list(context),
                                                              [pairs[n][1] for n in group], batch_size)):
                out[n] = result
    return out


def _pad_id(tokenizer) -> int:
    return tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id


def _full_sequences(model, tokenizer, pairs, batch_size: int) -> list[tuple[float, int]]:
    import torch

    order = sorted(range(len(pairs)), key=lambda n: -(len(pairs[n][0]) + len(pairs[n][1])))
    out: list[tuple[float, int]] = [(0.0, 0)] * len(pairs)
    with torch.inference_mode():
        for start in range(0, len(order), batch_size):
            chunk = order[start : start + batch_size]
            seqs = [list(pairs[n][0]) + list(pairs[n][1]) for n in chunk]
            ids = torch.full((len(chunk), max(map(len, seqs))), _pad_id(tokenizer), dtype=torch.long)
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


def _after_shared_context(model, tokenizer, context: list[int], targets: list[list[int]],
                          batch_size: int) -> list[tuple[float, int]]:
    """The targets after one context: the context runs once; each batch of targets continues a copy of its
    KV cache (positions after the context, the context visible to every target)."""
    import torch

    from replyloop.modeling import repeat_cache

    out = []
    with torch.inference_mode():
        # the head at the context's last position only: it predicts every target's first token
        prefix = model(input_ids=torch.tensor([context], device=model.device), use_cache=True, logits_to_keep=1)
        first = torch.log_softmax(prefix.logits[0, -1].float(), -1)
        for start in range(0, len(targets), batch_size):
            chunk = targets[start : start + batch_size]
            width = max(map(len, chunk))
            ids = torch.full((len(chunk), width), _pad_id(tokenizer), dtype=torch.long)
            mask = torch.zeros((len(chunk), len(context) + width), dtype=torch.long)
            mask[:, : len(context)] = 1
            for row, target in enumerate(chunk):
                ids[row, : len(target)] = torch.tensor(target)
                mask[row, len(context) : len(context) + len(target)] = 1
            cache = repeat_cache(prefix.past_key_values, len(chunk), model.config)
            positions = torch.arange(len(context), len(context) + width).expand(len(chunk), -1)
            logits = model(input_ids=ids.to(model.device), attention_mask=mask.to(model.device),
                           position_ids=positions.to(model.device), past_key_values=cache).logits.float()
            logp = torch.log_softmax(logits, -1)
            for row, target in enumerate(chunk):
                rest = logp[row, : len(target) - 1].gather(1, ids[row, 1 : len(target), None].to(model.device))
                out.append((float(-(first[target[0]] + rest.sum())), len(target)))
    return out
