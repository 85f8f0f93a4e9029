"""Measurements behind two gate settings (docs/gate.md, "How the tolerances were chosen"). Run under the lock:

    flock /tmp/heavy.lock python bench/gate_tolerances.py [--samples 4] [--sets safety golden heldout]

1. The judge's high-confidence threshold: its cross-validated precision/recall on the fit split (where it is
   chosen) and on the test split (never used to choose anything).
2. The ordinary flag rate between equally fine answerers, on each set of --sets (safety: the shipped red-team
   prompts; golden; heldout: the held-out split of the lake's current snapshot): the configured base model
   (SmolLM2) answers them greedily and with sampling (temperature 0.7, top-p 0.9) under
   several seeds. Sampled runs of one model are equally good by construction, so how far the paired
   bootstrap interval of their flag-rate difference reaches below zero is what the tolerance must absorb.
   Also printed: how many replies of each run the judge flags, and how many are high-confidence (a fine
   model should have none, or the zero-tolerance rule refuses it).
3. Reply fit of the base model on the shipped golden set: mean margin and per-item spread.
4. Expected behaviour on the safety set between the sampled runs: how far the whole-set interval and the
   per-category / per-behaviour slice intervals reach (what the expected_behaviour tolerance must absorb).
"""

from __future__ import annotations

import argparse
import itertools
import time

import numpy as np

from replyloop.evaluation.bootstrap import paired_interval
from replyloop.evaluation.judge import DEFAULT_REPLIES, get_judge, load_labelled
from replyloop.evaluation.sets import file_set, heldout_set
from replyloop.settings import get_settings


def judge_split(judge, split: str) -> str:
    rows = [r for r in load_labelled(DEFAULT_REPLIES) if r["split"] == split]
    verdicts = judge.judge([r["text"] for r in rows])
    y = np.array([r["label"] != "polite" for r in rows])
    out = []
    for name, f in (("ordinary", np.array([not v.safe for v in verdicts])),
                    ("high-confidence", np.array([judge.high_confidence(v) for v in verdicts]))):
        tp = int((f & y).sum())
        out.append(f"  {split} split (n={len(rows)}) {name:15s}: flagged {int(f.sum()):3d}, precision "
                   f"{tp / max(f.sum(), 1):.3f}, recall {tp / y.sum():.3f}, polite replies flagged "
                   f"{int((f & ~y).sum())} of {int((~y).sum())}")
    return "\n".join(out)


def sampled_replies(gen, conversations, seed: int | None) -> list[str]:
    import torch

    from replyloop.chat import prompt_ids

    kwargs = gen.generate_kwargs()
    if seed is not None:
        kwargs.update(do_sample=True, temperature=0.7, top_p=0.9)
        torch.manual_seed(seed)
    gen.tok.padding_side = "left"
    out = []
    for i in range(0, len(conversations), 8):
        ids = [prompt_ids(gen.tok, c, gen.system_prompt, gen.max_prompt_tokens) for c in conversations[i : i + 8]]
        enc = gen.tok.pad({"input_ids": ids}, return_tensors="pt")
        with torch.inference_mode():
            rows = gen.model.generate(**enc, **kwargs)[:, enc["input_ids"].shape[1]:]
        out += [gen.tok.decode(r, skip_special_tokens=True).strip() for r in rows]
    return out


def flag_rate_spread(judge, gen, evalset, samples: int, behaviour=None, behaved: dict | None = None) -> dict:
    """Part 2 on one evaluation set: the judge's flags on greedy and sampled replies of the base model, and the
    paired bootstrap intervals of the flag-rate difference between sampled runs (equally fine by construction)."""
    convs, prompts = [it.messages for it in evalset.items], [it.prompt_text for it in evalset.items]
    expected = [it.expected for it in evalset.items]
    runs = {}
    for seed in [None, *range(1, samples + 1)]:
        started = time.monotonic()
        replies = sampled_replies(gen, convs, seed)
        verdicts = judge.judge(replies, prompts)
        name = "greedy" if seed is None else f"sampled seed {seed}"
        runs[name] = np.array([float(not v.safe) for v in verdicts])
        shown = ""
        if behaviour is not None:
            behaved[name] = behaviour.shows(replies, expected)[0]
            shown = f", expected behaviour shown {int(behaved[name].sum())}/{len(replies)}"
        severe = [(replies[i], v.reasons, round(v.score, 3)) for i, v in enumerate(verdicts) if judge.high_confidence(v)]
        print(f"2. {evalset.name} {name}: {int(runs[name].sum())}/{len(replies)} flagged ({runs[name].mean():.3f}), "
              f"{len(severe)} high-confidence{shown}, {time.monotonic() - started:.0f}s", flush=True)
        for sev in severe:
            print(f"     high-confidence: {sev}")
    lows = []
    for a, b in itertools.combinations([n for n in runs if n != "greedy"], 2):
        ci = paired_interval(runs[a], runs[b], higher_is_better=False, resamples=2000, confidence=0.95, seed=20261201)
        lows += [ci.low, -ci.high]  # both orientations: either run may be the candidate
        print(f"   {a} vs {b}: delta {ci.delta:+.3f}, CI [{ci.low:+.3f}, {ci.high:+.3f}], "
              f"discordant {int((runs[a] != runs[b]).sum())}")
    if lows:
        print(f"   {evalset.name} ({len(convs)} items): lowest CI bound between equally fine runs {min(lows):+.3f}; "
              f"median {np.median(lows):+.3f}", flush=True)
    return runs


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--samples", type=int, default=4, help="sampled runs (seeds 1..N) besides the greedy one")
    parser.add_argument("--no-reply-fit", action="store_true", help="skip part 3 (about 4.5 minutes)")
    parser.add_argument("--sets", nargs="+", default=["safety"], choices=["safety", "golden", "heldout"],
                        help="sets of part 2 (heldout: the held-out split of the lake's current snapshot); parts 3 "
                             "and 4 run when safety is among them")
    args = parser.parse_args()
    import torch

    from replyloop.evaluation.metrics import load_metric
    from replyloop.modeling import ReplyGenerator, load_base, resolve_base_model

    settings = get_settings()
    judge = get_judge(settings)
    r = judge.report
    print(f"1. judge: ordinary threshold {r.threshold:.3f} (cv precision {r.cv_precision:.3f}, recall "
          f"{r.cv_recall:.3f}); high-confidence threshold {r.high_threshold:.3f} (cv precision "
          f"{r.high_cv_precision:.3f}, recall {r.high_cv_recall:.3f}, classifier alone, n_fit {r.n_fit})")
    print("  (fit split: the classifier was fitted on it, so its figures there are in-sample)")
    print(judge_split(judge, "fit") + "\n" + judge_split(judge, "test"))

    torch.manual_seed(0)
    model, tok = load_base(resolve_base_model(settings))
    gen = ReplyGenerator(model, tok, system_prompt=settings.rendered_system_prompt(),
                         max_new_tokens=settings.max_new_tokens)
    from replyloop.evaluation.behaviour import get_classifier

    behaved = {}
    for name in args.sets:
        evalset = heldout_set(settings, None) if name == "heldout" else file_set(settings, name)
        if not evalset.items:
            print(f"2. {name}: no items ({evalset.source})")
            continue
        flag_rate_spread(judge, gen, evalset, args.samples, get_classifier(settings) if name == "safety" else None,
                         behaved)
    if "safety" not in args.sets:
        return
    safety = file_set(settings, "safety")
    print("4. expected behaviour between equally fine runs (whole set: lowest CI bound; per category and per "
          "expected behaviour: lowest upper bound, the slice rule's side)")
    slices = {f"{key}={v}": [i for i, it in enumerate(safety.items) if it.slices.get(key) == v]
              for key in ("category", "expected") for v in sorted({it.slices[key] for it in safety.items})}
    for a, b in itertools.permutations([n for n in behaved if n != "greedy"], 2):
        ci = paired_interval(behaved[a], behaved[b], higher_is_better=True, resamples=2000, confidence=0.95,
                             seed=20261201)
        worst = min((paired_interval(behaved[a][idx], behaved[b][idx], higher_is_better=True, resamples=2000,
                                     confidence=0.95, seed=20261201).high, name) for name, idx in slices.items())
        print(f"   {a} - {b}: delta {ci.delta:+.3f} CI [{ci.low:+.3f}, {ci.high:+.3f}]; lowest slice upper bound "
              f"{worst[0]:+.3f} ({worst[1]})")

    if args.no_reply_fit:
        return
    golden = file_set(settings, "golden")
    from replyloop.chat import prompt_ids

    ctx = [prompt_ids(tok, it.messages, gen.system_prompt, 100_000) for it in golden.items]
    started = time.monotonic()
    out = load_metric("reply_fit").compute(predictions=[it.reference for it in golden.items], model=model,
                                           tokenizer=tok, contexts=ctx,
                                           groups=[it.slices.get("intent") for it in golden.items])
    s = np.asarray(out["scores"])
    print(f"3. reply_fit of the base model on {len(s)} golden items: mean {s.mean():.2f} nats/reply, per-item sd "
          f"{s.std():.2f}, ranked share {np.mean(out['ranked_share']):.3f}, {time.monotonic() - started:.0f}s")


if __name__ == "__main__":
    main()
