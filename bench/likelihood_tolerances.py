"""Measurement behind the reply_fit tolerance (docs/gate.md), not a test: pytest does not collect it unless
named. Run under the lock:

    flock /tmp/heavy.lock python -m pytest -q -s -p no:randomly tests/evaluation/exp_reply_fit_noise.py

Reply fit and perplexity between equally good tiny models (clean LoRAs: seeds 17 and 18, 100 and 250 steps,
and the base they start from) and poisoned ones (the same recipe on a lake whose second day has 90 % of
its conversations' agent replies shuffled), with paired bootstrap intervals, on data the poisoned-night
test does not use: lake generator seed 21, golden items of generator seed 999 (60), the clean held-out split.
"""

from __future__ import annotations

import itertools
import shutil
from datetime import date

import numpy as np


def test_measure(tmp_path, tiny_learner_dir, monkeypatch):
    import torch

    from replyloop import registry
    from replyloop.demo_data import generate_landing
    from replyloop.evaluation.bootstrap import paired_interval
    from replyloop.evaluation.scoring import _compute
    from replyloop.evaluation.sets import EvalItem, EvalSet, heldout_items
    from replyloop.ingest.pipeline import run_ingest
    from replyloop.ingest.snapshot import read_snapshot
    from replyloop.lake import open_lake
    from replyloop.settings import get_settings
    from replyloop.training.config import load_train_config
    from replyloop.training.train import train
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).parent / "data"))
    from make_eval_sets import golden

    from evaluation.test_poisoned_night import POISONED_SHARE, RECIPE, land, pretrained_learner

    torch.set_num_threads(1)
    monkeypatch.setenv("REPLYLOOP_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    get_settings.cache_clear()
    base = pretrained_learner(tiny_learner_dir, tmp_path / "pre")
    for key, value in {"BASE_MODEL": str(base), "MAX_NEW_TOKENS": "12", "EVAL_FRACTION": "0.3"}.items():
        monkeypatch.setenv(f"REPLYLOOP_{key}", value)
    get_settings.cache_clear()
    clean = get_settings()
    poisoned = clean.model_copy(update={"lake_uri": str(tmp_path / "poisoned-lake")})
    files = {}
    generate_landing(files.__setitem__, start_date=date(2026, 10, 10), days=2, conversations_per_day=200, seed=21)
    land(open_lake(clean.lake), files, "2026-10-10")
    run_ingest(clean)
    shutil.copytree(clean.lake, poisoned.lake)
    land(open_lake(poisoned.lake), files, "2026-10-11", poison=POISONED_SHARE)
    run_ingest(poisoned)
    land(open_lake(clean.lake), files, "2026-10-11")
    run_ingest(clean)
    versions = {
        "clean100-s17": train(load_train_config(max_steps=100, **RECIPE), clean)["version"],
        "clean100-s18": train(load_train_config(max_steps=100, seed=18, **RECIPE), clean)["version"],
        "clean250-s17": train(load_train_config(max_steps=250, **RECIPE), clean)["version"],
        "poisoned100": train(load_train_config(max_steps=100, **RECIPE), poisoned)["version"],
        "poisoned250": train(load_train_config(max_steps=250, **RECIPE), poisoned)["version"],
    }
    gold = [EvalItem(g["id"], g["messages"], g["reference"], {"intent": g["intent"]}) for g in golden(60, seed=999)]
    _, messages, _ = read_snapshot(open_lake(clean.lake))
    sets = {"golden": EvalSet("golden", gold, "", ""), "heldout": EvalSet("heldout", heldout_items(messages, 40), "", "")}
    opts = {"reply_fit": {"distractors": 4, "seed": 0}}
    from replyloop.modeling import ReplyGenerator, load_base as load_base_model, resolve_base_model

    m, t = load_base_model(resolve_base_model(clean))
    gens = {"base": ReplyGenerator(m, t, system_prompt=clean.rendered_system_prompt())}
    for name, v in versions.items():
        gens[name] = registry.load_version(clean, v)
    scores = {}
    for set_name, es in sets.items():
        for name, gen in gens.items():
            fit = np.asarray(_compute("reply_fit", gen, es, [], opts)[0])
            ppl = np.asarray(_compute("perplexity", gen, es, [], opts)[0])
            scores[set_name, name] = (fit, ppl)
            print(f"{set_name} n={len(es.items)} {name}: reply_fit {fit.mean():.3f} (sd {fit.std():.2f}), "
                  f"ppl nats/token {ppl.mean():.4f}")
        for a, b in itertools.permutations(gens, 2):
            ci = paired_interval(scores[set_name, a][0], scores[set_name, b][0], higher_is_better=True,
                                 resamples=300, confidence=0.95, seed=7)
            cp = paired_interval(scores[set_name, a][1], scores[set_name, b][1], higher_is_better=False,
                                 resamples=300, confidence=0.95, seed=7)
            print(f"  {set_name} {a} - {b}: reply_fit delta {ci.delta:+.3f} CI [{ci.low:+.3f}, {ci.high:+.3f}]; "
                  f"ppl delta {cp.delta:+.4f} CI [{cp.low:+.4f}, {cp.high:+.4f}]")
