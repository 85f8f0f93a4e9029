"""How the reply-safety judge's features, C and recall margin were chosen: nested CV on the FIT split only.

    python bench/judge_selection.py [--replies PATH] [--repeats 2]

The `test` split is never read (rows are filtered to `split == "fit"` before anything else). For each
candidate (features x model) the whole fit procedure of `evaluation.judge` is repeated inside each outer
fold: inner 5-fold out-of-fold probabilities, the threshold by `choose_threshold` for a target recall,
then the classifier on the outer training part scores the outer held-out fold. Printed for several
targets: recall, precision, false-flag rate on polite and on short polite replies, pooled over the outer
folds: what the procedure delivers on replies it has not seen, which the inner CV figures alone overstate.
The judge's RECALL_MARGIN is the smallest step above `judge_target_recall` at which the outer recall of
the chosen candidate reaches that target.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "include"))

from replyloop.evaluation import judge as J  # noqa: E402
from replyloop.evaluation.embeddings import layer_embeddings  # noqa: E402
from replyloop.evaluation.lm_states import mean_states  # noqa: E402
from replyloop.settings import Settings  # noqa: E402

SHORT_WORDS = 8
TARGETS = (0.95, 0.96, 0.97, 0.98)
# (name, features, standardised, C): the judge before this change, MiniLM standardised, the judge now
CANDIDATES = [("MiniLM, raw, C=32 (judge before)", "minilm", False, 32.0),
              ("MiniLM, standardised, C=0.01", "minilm", True, 0.01),
              ("MiniLM + SmolLM2 3,6,9, standardised, C=0.01", "both", True, 0.01)]


def _model(standardised: bool, c: float):
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    lr = LogisticRegression(C=c, class_weight="balanced", max_iter=5000)
    return make_pipeline(StandardScaler(), lr) if standardised else lr


def _p_not_polite(model, x) -> np.ndarray:
    return 1 - model.predict_proba(x)[:, list(model.classes_).index("polite")]


def nested(x, y, ruled, make, repeats: int) -> dict[float, np.ndarray]:
    """{target: (repeats, n) flags of the outer held-out folds under the judge's own fit procedure}."""
    from sklearn.model_selection import StratifiedKFold

    flags = {t: np.zeros((repeats, len(y)), dtype=bool) for t in TARGETS}
    for rep in range(repeats):
        for tr, te in StratifiedKFold(J.CV_FOLDS, shuffle=True, random_state=100 + rep).split(x, y):
            oof = np.zeros(len(tr))
            for itr, ite in StratifiedKFold(J.CV_FOLDS, shuffle=True, random_state=0).split(x[tr], y[tr]):
                oof[ite] = _p_not_polite(make().fit(x[tr][itr], y[tr][itr]), x[tr][ite])
            score = _p_not_polite(make().fit(x[tr], y[tr]), x[te])
            for t in TARGETS:
                th, _, _ = J.choose_threshold(oof, ruled[tr], y[tr] != "polite", t)
                flags[t][rep, te] = ruled[te] | (score >= th)
    return flags


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--replies", type=Path, default=J.DEFAULT_REPLIES)
    ap.add_argument("--repeats", type=int, default=2, help="outer cross-validation repeats")
    args = ap.parse_args(argv)
    settings = Settings()
    fit = [r for r in J.load_labelled(args.replies) if r["split"] == "fit"]  # the test split is never read
    texts = [r["text"] for r in fit]
    y = np.array([r["label"] for r in fit])
    pos = y != "polite"
    short = ~pos & np.array([len(t.split()) <= SHORT_WORDS for t in texts])
    ruled = np.array([bool(J.rule_hits(t, system_prompt=settings.rendered_system_prompt())) for t in texts])
    minilm = layer_embeddings(texts, poolings=("mean", "max")).reshape(len(fit), -1)
    feats = {"minilm": minilm,
             "both": np.hstack([minilm, mean_states(texts, (3, 6, 9), settings.home).reshape(len(fit), -1)])}
    print(f"fit split of {args.replies}: {len(fit)} replies ({pos.sum()} not polite, {short.sum()} short polite); "
          f"nested {J.CV_FOLDS}-fold CV x {args.repeats}")
    with J._one_blas_thread():
        for name, feat, standardised, c in CANDIDATES:
            start = time.perf_counter()
            flags = nested(feats[feat], y, ruled, lambda: _model(standardised, c), args.repeats)
            print(f"  {name} ({time.perf_counter() - start:.0f} s)")
            for t, f in flags.items():
                tp = (f & pos).sum()
                print(f"    threshold for CV recall {t:.2f}: recall {tp / (pos.sum() * len(f)):.3f}  "
                      f"precision {tp / f.sum():.3f}  fp polite {(f & ~pos).sum() / ((~pos).sum() * len(f)):.3f}  "
                      f"fp short polite {(f & short).sum() / (short.sum() * len(f)):.3f}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
