"""One model answers every evaluation set; each metric gives one score per reply.

Metrics are the `evaluate` modules shipped in `resources/metrics/`: token F1, ROUGE-L, chrF++, semantic
similarity (packaged MiniLM embeddings), perplexity of the references, reply fit (is the reference likelier
after its own message than after others?), reply-length sanity, PII leak, safety (replies the reply-safety
judge flags, `evaluation.judge`) and safety_severe (replies with a judge rule hit or a high-confidence
classifier flag). Per-reply scores are kept, so that the gate can compare models pair by pair and per slice.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

import numpy as np

from replyloop.evaluation.metrics import load_metric
from replyloop.evaluation.sets import EvalSet


@dataclass(frozen=True)
class MetricSpec:
    higher_is_better: bool
    needs_reference: bool
    title: str


METRICS: dict[str, MetricSpec] = {
    "token_f1": MetricSpec(True, True, "token F1"),
    "rougeL": MetricSpec(True, True, "ROUGE-L"),
    "chrf": MetricSpec(True, True, "chrF++ (sentence mean)"),
    "semantic_similarity": MetricSpec(True, True, "semantic similarity (MiniLM cosine)"),
    "perplexity": MetricSpec(False, True, "perplexity of the references (scores: nats/token)"),
    "reply_fit": MetricSpec(True, True, "reply fit: log p(reference | its prompt) - log p(reference | other "
                                        "prompts), nats per reply"),
    "rude_likelihood": MetricSpec(False, False, "rude likelihood: log p(rude or unsafe line) - log p(polite line) "
                                                "after each prompt, nats per token"),
    "reply_length": MetricSpec(True, False, "share of replies with a sane length"),
    "pii_leak": MetricSpec(False, False, "share of replies leaking PII"),
    "safety": MetricSpec(False, False, "share of replies the safety judge flags"),
    "safety_severe": MetricSpec(False, False, "share of replies with a judge rule hit or a high-confidence flag"),
    "expected_behaviour": MetricSpec(True, False, "share of red-team replies showing their item's expected "
                                                  "behaviour (refuse, redirect to DM, de-escalate, stay on topic)"),
}
EXPECTED_ONLY = ("expected_behaviour",)  # metrics that need each item's `expected` behaviour: the safety set
log = logging.getLogger(__name__)


@dataclass
class SetScores:
    """One model on one evaluation set."""

    replies: list[str]
    scores: dict[str, np.ndarray] = field(default_factory=dict)   # metric -> one value per item
    summary: dict[str, float] = field(default_factory=dict)       # metric -> set-level value
    details: dict[str, list] = field(default_factory=dict)        # e.g. PII spans, judge labels per item


def _prompt_ids(gen, messages: list[dict]) -> list[int]:
    from replyloop.chat import prompt_ids

    return prompt_ids(gen.tok, messages, gen.system_prompt, 100_000)


FLAGGED_LABELS = ("rude", "unsafe")


def contrast_lines(path, split: str = "fit", flagged_labels=FLAGGED_LABELS) -> tuple[list[str], list[str]]:
    """(flagged, polite) reply texts of one split of the reply-safety judge's labelled set (`path`, default
    the shipped one): what `rude_likelihood` compares. The fit split by default: the test split stays for
    measuring the judge, and for tests that poison data with rude lines the metric has never seen."""
    from replyloop.evaluation.judge import DEFAULT_REPLIES, load_labelled

    rows = [r for r in load_labelled(path or DEFAULT_REPLIES) if r["split"] == split]
    return ([r["text"] for r in rows if r["label"] in flagged_labels],
            [r["text"] for r in rows if r["label"] == "polite"])


def _judged(es: EvalSet, replies: list[str], cache: dict) -> dict:
    """The safety module's output for these replies, computed once for `safety` and `safety_severe`."""
    if "safety" not in cache:
        cache["safety"] = load_metric("safety").compute(predictions=replies,
                                                        prompts=[it.prompt_text for it in es.items])
    return cache["safety"]


def _verdict_label(v: dict) -> str:
    return v["label"] + (f" ({', '.join(v['reasons'])})" if v["reasons"] else "") + (" [severe]" if v["severe"] else "")


def _compute(name: str, gen, es: EvalSet, replies: list[str], options: dict,
             cache: dict | None = None) -> tuple[list, float, list]:
    """(score per reply, set value, details per reply) of one metric."""
    cache = {} if cache is None else cache
    refs = [it.reference or "" for it in es.items]
    prompts = [[m["text"] for m in it.messages] for it in es.items]
    if name in ("token_f1", "rougeL", "chrf"):
        module = {"rougeL": "rouge"}.get(name, name)
        kwargs = {"rouge_types": ["rougeL"]} if name == "rougeL" else {}
        out = load_metric(module).compute(predictions=replies, references=refs, **kwargs)
        scores = out["scores"]["rougeL"] if name == "rougeL" else out["scores"]
        return scores, float(np.mean(scores)) if scores else float("nan"), []
    if name == "perplexity":
        contexts = [_prompt_ids(gen, it.messages) for it in es.items]
        out = load_metric("perplexity").compute(predictions=refs, model=gen.model, tokenizer=gen.tok,
                                                contexts=contexts)
        return out["scores"], out["perplexity"], []
    if name == "reply_fit":
        contexts = [_prompt_ids(gen, it.messages) for it in es.items]
        out = load_metric("reply_fit").compute(predictions=refs, model=gen.model, tokenizer=gen.tok, contexts=contexts,
                                               groups=[it.slices.get("intent") for it in es.items],
                                               **options.get("reply_fit", {}))
        return out["scores"], out["reply_fit"], []
    if name == "rude_likelihood":
        opts = dict(options.get("rude_likelihood", {}))
        flagged, polite = contrast_lines(opts.pop("replies", None), opts.pop("split", "fit"),
                                         opts.pop("flagged_labels", FLAGGED_LABELS))
        contexts = [_prompt_ids(gen, it.messages) for it in es.items]
        out = load_metric("rude_likelihood").compute(
            predictions=[it.prompt_text for it in es.items], model=gen.model, tokenizer=gen.tok, contexts=contexts,
            flagged=flagged, polite=polite, **opts)
        return out["scores"], out["rude_likelihood"], []
    if name == "reply_length":
        out = load_metric("reply_length").compute(predictions=replies, **options.get("reply_length", {}))
        return out["scores"], out["sane_rate"], []
    if name == "pii_leak":
        out = load_metric("pii_leak").compute(predictions=replies, prompts=prompts)
        return out["scores"], out["leak_rate"], out["spans"]
    if name == "semantic_similarity":
        out = load_metric("semantic_similarity").compute(predictions=replies, references=refs)
        return out["scores"], out["semantic_similarity"] if out["scores"] else float("nan"), []
    if name == "expected_behaviour":
        expected = [it.expected for it in es.items]
        if None in expected:
            raise ValueError(f"expected_behaviour needs an expected behaviour on every item; {es.name} has none")
        out = load_metric("expected_behaviour").compute(predictions=replies, expected=expected)
        return out["scores"], out["expected_behaviour"], [f"P(expected {e}) {p:.2f}" for e, p in
                                                         zip(expected, out["probabilities"])]
    if name in ("safety", "safety_severe"):
        verdicts = _judged(es, replies, cache)["verdicts"]
        flags = [float(not v["safe"]) if name == "safety" else float(v["severe"]) for v in verdicts]
        return flags, float(np.mean(flags)) if flags else float("nan"), [_verdict_label(v) for v in verdicts]
    raise KeyError(name)


def score_model(gen, sets: dict[str, EvalSet], metrics_by_set: dict[str, list[str]], *,
                options: dict) -> dict[str, SetScores]:
    """Generate a reply to every item of every set, then score them with the set's metrics."""
    out = {}
    for set_name, es in sets.items():
        started = time.monotonic()
        replies = gen.reply([it.messages for it in es.items]) if es.items else []
        scored, cache = SetScores(replies), {}
        for metric in metrics_by_set.get(set_name, []):
            values, summary, details = _compute(metric, gen, es, replies, options, cache)
            scored.scores[metric] = np.asarray(values, dtype=float)
            scored.summary[metric] = float(summary)
            if details:
                scored.details[metric] = details
        log.info("scored %d %s replies in %.1fs", len(replies), set_name, time.monotonic() - started)
        out[set_name] = scored
    return out
