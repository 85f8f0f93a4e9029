"""Reply fit as an `evaluate` module: does the model find a reference reply likelier after the message it
answers than after other messages?

For each item i (reference r_i, prompt c_i) a few distractor prompts c_j of other items are chosen
deterministically (by a hash of the seed and the two positions; items of another group, e.g. another
intent, first, and never an item with the same reference text). The item's score is the mean over its
distractors of

    log p(r_i | c_i) - log p(r_i | c_j)        (nats per reply: summed over the reply's tokens)

the log-likelihood ratio of the right pairing against a wrong one. The same text is scored under both
prompts, so its length and how common it is cancel out: only the dependence on the prompt is measured.
A model that ignores the prompt scores 0; a model that learned which reply answers which message scores
well above 0. A model trained on replies shuffled across conversations loses part of that dependence, so
its score falls even where the per-token perplexity of the references barely moves (a 30 % shuffle costs
about 0.02 nats per token but several nats per reply on the wrong-prompt side).

Also returned: `ranked_share`, per item the share of distractors under which the reference is less likely
than under its own prompt (ties, margins within 1e-4 nats of float noise, count half; chance is 0.5).
"""

import hashlib
import math

import evaluate

from replyloop.evaluation.likelihood import summed_nll, target_ids
from replyloop.evaluation.metrics import text_metric_info

TIE = 1e-4  # nats: batching and padding change summed log-likelihoods by float noise
_DESCRIPTION = "Log-likelihood margin of each reference under its own prompt against other items' prompts."
_KWARGS = """
Args:
    predictions: the reference replies (texts), one per item.
    model: a causal LM (transformers) already on its device.
    tokenizer: its tokenizer.
    contexts: one list of prompt token ids per item.
    groups: optional label per item (e.g. intent); distractors come from other groups first.
    distractors: distractor prompts per item (default 4).
    seed: the choice of distractors (default 0).
    batch_size: sequences per forward pass (default 8).
Returns:
    {"reply_fit": mean margin, "scores": [margin per item, nats per reply; NaN without a distractor],
     "ranked_share": [share of distractors ranked below, per item], "distractors": [[positions] per item]}
"""


def _rank(seed: int, i: int, j: int) -> str:
    return hashlib.sha256(f"{seed}:{i}:{j}".encode()).hexdigest()


def choose_distractors(references, groups, k: int, seed: int) -> list[list[int]]:
    """For each item, up to k other positions: another group first, never the same reference text."""
    out = []
    for i, ref in enumerate(references):
        others = [j for j in range(len(references)) if j != i and references[j].strip() != ref.strip()]
        others.sort(key=lambda j: (groups is not None and groups[j] == groups[i], _rank(seed, i, j)))
        out.append(others[:k])
    return out


class ReplyFit(evaluate.Metric):
    def _info(self):
        return text_metric_info(_DESCRIPTION, _KWARGS, references=False)

    def _compute(self, predictions, model=None, tokenizer=None, contexts=None, groups=None, distractors=4, seed=0,
                 batch_size=8):
        refs = list(predictions)
        if model is None or tokenizer is None or contexts is None or len(contexts) != len(refs):
            raise ValueError("reply_fit needs model, tokenizer and one prompt (contexts) per reference")
        if groups is not None and len(groups) != len(refs):
            raise ValueError(f"reply_fit: {len(refs)} references but {len(groups)} groups")
        if int(distractors) < 1:
            raise ValueError(f"reply_fit: distractors must be at least 1, not {distractors}")
        chosen = choose_distractors(refs, groups, int(distractors), int(seed))
        targets = [target_ids(tokenizer, r) for r in refs]
        pairs = [(contexts[i], targets[i]) for i in range(len(refs))]
        pairs += [(contexts[j], targets[i]) for i in range(len(refs)) for j in chosen[i]]
        nll = [total for total, _ in summed_nll(model, tokenizer, pairs, int(batch_size))]
        scores, ranked, at = [], [], len(refs)
        for i, js in enumerate(chosen):
            wrong, at = nll[at : at + len(js)], at + len(js)
            margins = [w - nll[i] for w in wrong]  # log p(r|own) - log p(r|other)
            scores.append(sum(margins) / len(margins) if margins else float("nan"))
            ranked.append(sum(1.0 if m > TIE else 0.0 if m < -TIE else 0.5 for m in margins) / len(margins)
                          if margins else float("nan"))
        valid = [s for s in scores if not math.isnan(s)]
        return {"reply_fit": sum(valid) / len(valid) if valid else float("nan"), "scores": scores,
                "ranked_share": ranked, "distractors": chosen}
