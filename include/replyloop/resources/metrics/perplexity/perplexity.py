"""Perplexity of the reference replies as an `evaluate` module: how likely the model finds what a good
agent wrote, given the conversation before it (teacher forcing).

The caller passes the model, its tokenizer and, per reference, the token ids of the prompt (the chat up
to the generation prompt, built by the same chat builder that serves). Returns the corpus perplexity
(exp of the token-weighted mean loss) and, under `scores`, each reference's mean loss in nats per token
(lower is better; the gate's paired bootstrap compares these).
"""

import math

import datasets
import evaluate

_DESCRIPTION = "Perplexity of reference replies under a causal language model, given their prompts."
_KWARGS = """
Args:
    predictions: the reference replies to score (texts).
    model: a causal LM (transformers) already on its device.
    tokenizer: its tokenizer.
    contexts: one list of prompt token ids per reference.
    batch_size: references per forward pass (default 8).
Returns:
    {"perplexity": float, "mean_loss": float, "scores": [mean loss per reference], "tokens": int}
"""


def _losses(model, tokenizer, contexts, texts, batch_size):
    import torch

    rows = []
    for ctx, text in zip(contexts, texts):
        target = tokenizer(text, add_special_tokens=False)["input_ids"] or [tokenizer.eos_token_id]
        rows.append((list(ctx) + target, len(ctx)))
    out = []
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    with torch.inference_mode():
        for i in range(0, len(rows), batch_size):
            chunk = rows[i : i + batch_size]
            width = max(len(ids) for ids, _ in chunk)
            ids = torch.full((len(chunk), width), pad, dtype=torch.long)
            mask = torch.zeros_like(ids)
            labels = torch.full_like(ids, -100)
            for j, (seq, start) in enumerate(chunk):
                ids[j, : len(seq)] = torch.tensor(seq)
                mask[j, : len(seq)] = 1
                labels[j, start : len(seq)] = ids[j, start : len(seq)]
            logits = model(input_ids=ids.to(model.device), attention_mask=mask.to(model.device)).logits.float()
            loss = torch.nn.functional.cross_entropy(logits[:, :-1].transpose(1, 2), labels[:, 1:].to(model.device),
                                                     ignore_index=-100, reduction="none")
            counts = (labels[:, 1:] != -100).sum(1).clamp(min=1).to(loss.device)
            out += [(float(s), int(c)) for s, c in zip(loss.sum(1) / counts, counts)]
    return out


class Perplexity(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation="",
            inputs_description=_KWARGS,
            features=datasets.Features({"predictions": datasets.Value("string")}),
        )

    def _compute(self, predictions, model=None, tokenizer=None, contexts=None, batch_size=8):
        if model is None or tokenizer is None or contexts is None or len(contexts) != len(predictions):
            raise ValueError("perplexity needs model, tokenizer and one prompt (contexts) per reference")
        pairs = _losses(model, tokenizer, contexts, list(predictions), batch_size)
        tokens = sum(c for _, c in pairs)
        mean = sum(s * c for s, c in pairs) / max(tokens, 1)
        return {"perplexity": math.exp(min(mean, 50.0)), "mean_loss": mean, "scores": [s for s, _ in pairs],
                "tokens": tokens}
