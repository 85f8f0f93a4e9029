"""Perplexity of the reference replies as an `evaluate` module: how likely the model finds what a good
agent wrote, given the conversation before it (teacher forcing).

The caller passes the model, its tokenizer and, per reference, the token ids of the prompt (the chat up
to the generation prompt, built by the same chat builder that serves). Returns the corpus perplexity
(exp of the token-weighted mean loss) and, under `scores`, each reference's mean loss in nats per token
(lower is better; the gate's paired bootstrap compares these).
"""

import math

import evaluate

from replyloop.evaluation.likelihood import summed_nll, target_ids
from replyloop.evaluation.metrics import text_metric_info

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
    """(mean loss in nats per token, token count) of each text after its context."""
    pairs = [(list(ctx), target_ids(tokenizer, text)) for ctx, text in zip(contexts, texts)]
    return [(total / max(n, 1), max(n, 1)) for total, n in summed_nll(model, tokenizer, pairs, batch_size)]


class Perplexity(evaluate.Metric):
    def _info(self):
        return text_metric_info(_DESCRIPTION, _KWARGS, references=False)

    def _compute(self, predictions, model=None, tokenizer=None, contexts=None, batch_size=8):
        if model is None or tokenizer is None or contexts is None or len(contexts) != len(predictions):
            raise ValueError("perplexity needs model, tokenizer and one prompt (contexts) per reference")
        pairs = _losses(model, tokenizer, contexts, list(predictions), batch_size)
        tokens = sum(c for _, c in pairs)
        mean = sum(s * c for s, c in pairs) / max(tokens, 1)
        return {"perplexity": math.exp(min(mean, 50.0)), "mean_loss": mean, "scores": [s for s, _ in pairs],
                "tokens": tokens}
