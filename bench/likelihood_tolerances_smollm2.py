"""The measurement of bench/likelihood_tolerances.py (reply_fit and rude_likelihood tolerances, and how far
perplexity moves meanwhile) on the shipped base model, SmolLM2-135M-Instruct, in stages so that each run
stays under the machine's 8-minute budget for heavy work (docs/gate.md, "How the new tolerances were chosen"):

    flock /tmp/heavy.lock timeout 480 python bench/likelihood_tolerances_smollm2.py lakes
    flock /tmp/heavy.lock timeout 480 python bench/likelihood_tolerances_smollm2.py train clean-s17
    ...   train clean-s18 | train shuffled | train rude
    flock /tmp/heavy.lock timeout 480 python bench/likelihood_tolerances_smollm2.py score base clean-s17 ...
    flock /tmp/heavy.lock timeout 480 python bench/likelihood_tolerances_smollm2.py fullfit base   (reply_fit alone,
    ...   fullfit clean-s17 ...                                                      on all 168 golden items)
    python bench/likelihood_tolerances_smollm2.py report

The data and poisons of the tiny bench (demo lake of generator seed 21, second day clean, shuffled (90 % of the
conversations' agent replies moved) or rude (each agent reply replaced with probability 0.7 by a rude line of
the judge's test split)); the models are LoRAs of the shipped recipe (resources/train.yaml) with fewer steps
(STEPS) on SmolLM2: equally good = the base model and clean LoRAs of seeds 17 and 18; poisoned = the same
recipe on the shuffled and the rude lake. Scored on every GOLDEN_STRIDE-th item of the SHIPPED golden set
(sorted by id) with the shipped metric options, paired 95 % intervals of 2000 resamples as the shipped gate.
Everything (home, lakes, registry, scores) lives under --work, so the stages can run one after the other.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
STEPS = 30
GOLDEN_STRIDE = 8  # 21 of the 168 shipped golden items (scoring 42 took 437 s for the base model alone)
METRICS = {"reply_fit": True, "rude_likelihood": False, "perplexity": False}  # higher is better?
CLEAN = ("base", "clean-s17", "clean-s18")
POISONED = ("shuffled", "rude")
TRAINED = {"clean-s17": ("clean", 17), "clean-s18": ("clean", 18), "shuffled": ("shuffled", 17),
           "rude": ("rude", 17)}


def _environment(work: Path) -> None:
    os.environ.update({"REPLYLOOP_HOME": str(work / "home"), "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1",
                       "HF_EVALUATE_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false",
                       "GX_ANALYTICS_ENABLED": "False", "MLFLOW_ENABLE_ASYNC_LOGGING": "false", "TQDM_DISABLE": "1"})
    for var in ("MLFLOW_TRACKING_URI", "REPLYLOOP_LAKE_URI", "AWS_ENDPOINT_URL", "REPLYLOOP_BASE_MODEL"):
        os.environ.pop(var, None)
    sys.path.insert(0, str(REPO / "tests"))
    sys.path.insert(0, str(REPO / "bench"))


def _settings(work: Path, lake: str):
    from replyloop.settings import get_settings

    s = get_settings()
    return s if lake == "clean" else s.model_copy(update={"lake_uri": str(work / f"{lake}-lake")})


def stage_lakes(work: Path) -> None:
    """The three lakes of the tiny bench: the same first day, the second clean, shuffled or rude."""
    import shutil
    from datetime import date

    from evaluation.test_poisoned_night import POISONED_SHARE, RUDE_SHARE, land, rude, shuffled

    from replyloop.demo_data import generate_landing
    from replyloop.ingest.pipeline import run_ingest
    from replyloop.lake import open_lake
    from replyloop.modeling import resolve_base_model

    clean = _settings(work, "clean")
    resolve_base_model(clean)  # stored once under the work home
    files: dict[str, bytes] = {}
    generate_landing(files.__setitem__, start_date=date(2026, 10, 10), days=2, conversations_per_day=200, seed=21)
    land(open_lake(clean.lake), files, "2026-10-10")
    run_ingest(clean)
    for name, poison in (("shuffled", shuffled(POISONED_SHARE)), ("rude", rude(RUDE_SHARE))):
        shutil.copytree(clean.lake, _settings(work, name).lake)
        land(open_lake(_settings(work, name).lake), files, "2026-10-11", poison=poison)
        run_ingest(_settings(work, name))
    land(open_lake(clean.lake), files, "2026-10-11")
    run_ingest(clean)


def stage_train(work: Path, names: list[str]) -> None:
    from replyloop.training.config import load_train_config
    from replyloop.training.train import train

    versions = _read(work / "versions.json")
    for name in names:
        lake, seed = TRAINED[name]
        started = time.monotonic()
        cfg = load_train_config(max_steps=STEPS, seed=seed, eval_every=1000)
        versions[name] = train(cfg, _settings(work, lake))["version"]
        print(f"trained {name} (lake {lake}, seed {seed}, {STEPS} steps): v{versions[name]}, "
              f"{time.monotonic() - started:.0f} s", flush=True)
        (work / "versions.json").write_text(json.dumps(versions))


def _read(path: Path) -> dict:
    return json.loads(path.read_text()) if path.exists() else {}


def golden_subset(stride: int = GOLDEN_STRIDE):
    from replyloop.evaluation.sets import EvalSet, file_set
    from replyloop.settings import get_settings

    full = file_set(get_settings(), "golden")
    items = sorted(full.items, key=lambda it: it.id)[::stride]
    return EvalSet("golden", items, full.sha256, full.source)


def stage_score(work: Path, names: list[str], full: bool = False) -> None:
    """Every metric on the golden subset; with `full`, reply_fit alone on the whole shipped golden set."""
    import numpy as np
    import torch
    import yaml

    from replyloop import registry
    from replyloop.evaluation.scoring import _compute
    from replyloop.modeling import ReplyGenerator, load_base, resolve_base_model
    from replyloop.settings import get_settings

    torch.set_num_threads(2)
    settings, versions = get_settings(), _read(work / "versions.json")
    options = yaml.safe_load((REPO / "include/replyloop/resources/gate.yaml").read_text())["metric_options"]
    golden = golden_subset(1 if full else GOLDEN_STRIDE)
    metrics = ["reply_fit"] if full else list(METRICS)
    for name in names:
        started = time.monotonic()
        if name == "base":
            model, tok = load_base(resolve_base_model(settings))
            gen = ReplyGenerator(model, tok, system_prompt=settings.rendered_system_prompt())
        else:
            gen = registry.load_version(settings, versions[name])
        scores = {m: np.asarray(_compute(m, gen, golden, [], options)[0], dtype=float) for m in metrics}
        np.savez(work / f"scores-{'full-' if full else ''}{name}.npz", **scores)
        print(f"scored {name} on {len(golden.items)} golden items: "
              + ", ".join(f"{m} {v.mean():+.3f}" for m, v in scores.items())
              + f"; {time.monotonic() - started:.0f} s", flush=True)
        del gen


def stage_report(work: Path) -> None:
    import numpy as np

    from replyloop.evaluation.bootstrap import paired_interval

    scores = {n: dict(np.load(work / f"scores-{n}.npz")) for n in (*CLEAN, *POISONED)
              if (work / f"scores-{n}.npz").exists()}
    for m, better in METRICS.items():
        print(f"\n{m} (positive deltas are better):")
        print("  " + ", ".join(f"{n} {s[m].mean():+.3f} (sd {s[m].std():.2f})" for n, s in scores.items()))
        ci = {}
        for a, b in itertools.permutations(scores, 2):
            ci[a, b] = paired_interval(scores[a][m], scores[b][m], higher_is_better=better, resamples=2000,
                                       confidence=0.95, seed=20261201)
            print(f"  {a} - {b}: delta {ci[a, b].delta:+.3f} CI [{ci[a, b].low:+.3f}, {ci[a, b].high:+.3f}]")
        fair = [ci[a, b].low for a, b in itertools.permutations([n for n in CLEAN if n in scores], 2) if a != "base"]
        if fair:
            print(f"  => a clean LoRA candidate against the other clean LoRAs and the base: lowest bound {min(fair):+.3f}")
        for bad in (n for n in POISONED if n in scores):
            lows = [ci[bad, b].low for b in CLEAN if b in scores]
            highs = [ci[bad, b].high for b in CLEAN if b in scores]
            print(f"  => {bad} against the clean models and the base: lower bounds {min(lows):+.3f} .. "
                  f"{max(lows):+.3f}, upper {min(highs):+.3f} .. {max(highs):+.3f}")


def stage_report_full(work: Path) -> None:
    import numpy as np

    from replyloop.evaluation.bootstrap import paired_interval

    scores = {n: np.load(work / f"scores-full-{n}.npz")["reply_fit"] for n in (*CLEAN, *POISONED)
              if (work / f"scores-full-{n}.npz").exists()}
    print("\nreply_fit on the whole shipped golden set:")
    print("  " + ", ".join(f"{n} {s.mean():+.3f} (sd {s.std():.2f}, n {len(s)})" for n, s in scores.items()))
    for a, b in itertools.permutations(scores, 2):
        ci = paired_interval(scores[a], scores[b], higher_is_better=True, resamples=2000, confidence=0.95,
                             seed=20261201)
        print(f"  {a} - {b}: delta {ci.delta:+.3f} CI [{ci.low:+.3f}, {ci.high:+.3f}]")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("stage", choices=["lakes", "train", "score", "fullfit", "report"])
    parser.add_argument("names", nargs="*")
    parser.add_argument("--work", type=Path, default=Path("/tmp/likelihood-tolerances-smollm2"))
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    _environment(args.work)
    started = time.monotonic()
    {"lakes": lambda: stage_lakes(args.work), "train": lambda: stage_train(args.work, args.names),
     "score": lambda: stage_score(args.work, args.names),
     "fullfit": lambda: stage_score(args.work, args.names, full=True),
     "report": lambda: (stage_report(args.work), stage_report_full(args.work))}[args.stage]()
    print(f"{args.stage} {' '.join(args.names)}: {time.monotonic() - started:.0f} s", flush=True)


if __name__ == "__main__":
    main()
