"""Measurements behind the tolerances of the gate's likelihood metrics, reply_fit and rude_likelihood
(docs/gate.md, "How the new tolerances were chosen"), and how far perplexity moves meanwhile. Run under the
lock:

    flock /tmp/heavy.lock python bench/likelihood_tolerances.py

The setup of tests/evaluation/test_poisoned_night.py (its tiny learner, pre-training, recipe and poisons) on
data that test does not use: a demo lake of generator seed 21 whose second day lands clean, shuffled (the
agent replies of 90 % of its conversations moved to other conversations) or rude (each agent reply replaced
with probability RUDE_SHARE by a rude line of the judge's labelled test split), scored on 60 golden items of
generator seed 999. Equally good models: the pre-trained base and clean LoRAs (seeds 17 and 18, 100 steps;
seed 17, 250 steps). Poisoned: the same recipe (100 steps) on the shuffled and the rude lake.

Printed: each model's mean per metric; the paired bootstrap interval (95 %, 300 resamples, as the test gate)
of every ordered pair; per metric, how far the intervals between equally good models reach on the bad side
(what a tolerance must allow) and how far each poisoned model's intervals against the clean ones and the base
stay on the bad side (what a tolerance must not allow).
"""

from __future__ import annotations

import itertools
import shutil
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

import conftest  # noqa: E402  (offline environment and a private home, as for the tests)
from evaluation.test_poisoned_night import (  # noqa: E402
    POISONED_SHARE, RECIPE, RUDE_SHARE, land, pretrained_learner, rude, shuffled)

METRICS = {"reply_fit": True, "rude_likelihood": False, "perplexity": False}  # higher is better?
OPTIONS = {"reply_fit": {"distractors": 4, "seed": 0}, "rude_likelihood": {"lines": 4, "seed": 0}}
CLEAN = ("base", "clean100-s17", "clean100-s18", "clean250-s17")


def lakes(scratch: Path):
    """Settings of three lakes with the same first day: the second day clean, shuffled and rude."""
    from replyloop.demo_data import generate_landing
    from replyloop.ingest.pipeline import run_ingest
    from replyloop.lake import open_lake
    from replyloop.settings import get_settings

    clean = get_settings()
    out = {"clean": clean, "shuffled": clean.model_copy(update={"lake_uri": str(scratch / "shuffled-lake")}),
           "rude": clean.model_copy(update={"lake_uri": str(scratch / "rude-lake")})}
    files: dict[str, bytes] = {}
    generate_landing(files.__setitem__, start_date=date(2026, 10, 10), days=2, conversations_per_day=200, seed=21)
    land(open_lake(clean.lake), files, "2026-10-10")
    run_ingest(clean)
    for name, poison in (("shuffled", shuffled(POISONED_SHARE)), ("rude", rude(RUDE_SHARE))):
        shutil.copytree(clean.lake, out[name].lake)
        land(open_lake(out[name].lake), files, "2026-10-11", poison=poison)
        run_ingest(out[name])
    land(open_lake(clean.lake), files, "2026-10-11")
    run_ingest(clean)
    return out


def answerers(settings: dict) -> dict:
    from replyloop import registry
    from replyloop.modeling import ReplyGenerator, load_base, resolve_base_model
    from replyloop.training.config import load_train_config
    from replyloop.training.train import train

    clean = settings["clean"]
    versions = {
        "clean100-s17": train(load_train_config(**RECIPE), clean)["version"],
        "clean100-s18": train(load_train_config(**{**RECIPE, "seed": 18}), clean)["version"],
        "clean250-s17": train(load_train_config(**{**RECIPE, "max_steps": 250}), clean)["version"],
        "shuffled100": train(load_train_config(**RECIPE), settings["shuffled"])["version"],
        "rude100": train(load_train_config(**RECIPE), settings["rude"])["version"],
    }
    model, tok = load_base(resolve_base_model(clean))
    out = {"base": ReplyGenerator(model, tok, system_prompt=clean.rendered_system_prompt())}
    return out | {name: registry.load_version(clean, v) for name, v in versions.items()}


def golden_set(n: int = 60, seed: int = 999):
    sys.path.insert(0, str(REPO / "tests" / "evaluation" / "data"))
    from make_eval_sets import golden

    from replyloop.evaluation.sets import EvalItem, EvalSet

    return EvalSet("golden", [EvalItem(g["id"], g["messages"], g["reference"], {"intent": g["intent"]})
                              for g in golden(n, seed=seed)], "", "")


def main() -> None:
    import torch

    from replyloop.evaluation.bootstrap import paired_interval
    from replyloop.evaluation.scoring import _compute
    from replyloop.settings import get_settings

    started = time.monotonic()
    torch.set_num_threads(1)
    scratch = Path(tempfile.mkdtemp(prefix="likelihood-tolerances-"))
    base = pretrained_learner(conftest.build_tiny_learner(scratch / "learner"), scratch / "pre")
    conftest.os.environ.update({"REPLYLOOP_BASE_MODEL": str(base), "REPLYLOOP_MAX_NEW_TOKENS": "12",
                                "REPLYLOOP_EVAL_FRACTION": "0.3"})
    get_settings.cache_clear()
    gens = answerers(lakes(scratch))
    golden = golden_set()
    scores = {(m, name): np.asarray(_compute(m, gen, golden, [], OPTIONS)[0], dtype=float)
              for name, gen in gens.items() for m in METRICS}
    for m, better in METRICS.items():
        print(f"\n{m} on {len(golden.items)} golden items (positive deltas are better):")
        print("  " + ", ".join(f"{name} {scores[m, name].mean():+.3f}" for name in gens))
        ci = {}
        for a, b in itertools.permutations(gens, 2):
            ci[a, b] = paired_interval(scores[m, a], scores[m, b], higher_is_better=better, resamples=300,
                                       confidence=0.95, seed=7)
            print(f"  {a} - {b}: delta {ci[a, b].delta:+.3f} CI [{ci[a, b].low:+.3f}, {ci[a, b].high:+.3f}]")
        fair = [ci[a, b].low for a, b in itertools.permutations(CLEAN, 2)]
        print(f"  => equally good models: lowest bound {min(fair):+.3f}")
        for bad in ("shuffled100", "rude100"):
            highs = [ci[bad, b].high for b in CLEAN]
            lows = [ci[bad, b].low for b in CLEAN]
            print(f"  => {bad} against the clean models and the base: bounds {min(lows):+.3f} .. "
                  f"{max(lows):+.3f} (lower), {min(highs):+.3f} .. {max(highs):+.3f} (upper)")
    print(f"\n{time.monotonic() - started:.0f} s; scratch {scratch}")
    shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
