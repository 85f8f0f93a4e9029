"""How the reply-safety judge's features and C were chosen: nested cross-validation on the FIT split only.

    python bench/judge_selection.py [--replies PATH] [--repeats 2]

The `test` split is never read (rows are filtered to `split == "fit"` before anything else). For each
candidate (pooling x C) the whole fit procedure of `evaluation.judge` is repeated inside each outer fold:
inner 5-fold out-of-fold probabilities, the threshold by `choose_threshold` for `judge_target_recall`,
then the classifier on the outer training part scores the outer held-out fold. Printed: recall,
precision, false-flag rate on polite replies and on short polite replies, pooled over the outer folds:
what the procedure delivers on replies it has not seen, which the inner CV figures alone overstate.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "include"))

from replyloop.evaluation import judge as J  # noqa: E402
from replyloop.evaluation.embeddings import layer_embeddings  # noqa: E402
from replyloop.settings import Settings  # noqa: E402

SHORT_WORDS = 8
CANDIDATES = [(pool, c) for pool in (("mean",), ("mean", "max")) for c in (2.0, 8.0, 32.0)]


def _lr(c: float):
    from sklearn.linear_model import LogisticRegression

    return LogisticRegression(C=c, class_weight="balanced", max_iter=5000)


def _p_not_polite(model, x) -> np.ndarray:
    return 1 - model.predict_proba(x)[:, list(model.classes_).index("polite")]


def nested(x, y, ruled, c: float, target: float, repeats: int) -> np.ndarray:
    """(repeats, n) flags of the outer held-out folds under the judge's own fit procedure."""
    from sklearn.model_selection import StratifiedKFold, cross_val_predict

    flags = np.zeros((repeats, len(y)), dtype=bool)
    for rep in range(repeats):
        for tr, te in StratifiedKFold(J.CV_FOLDS, shuffle=True, random_state=100 + rep).split(x, y):
            inner = StratifiedKFold(J.CV_FOLDS, shuffle=True, random_state=0)
            oof = 1 - cross_val_predict(_lr(c), x[tr], y[tr], cv=inner, method="predict_proba")[
                :, sorted(set(y[tr])).index("polite")]
            t, _, _ = J.choose_threshold(oof, ruled[tr], y[tr] != "polite", target)
            flags[rep, te] = ruled[te] | (_p_not_polite(_lr(c).fit(x[tr], y[tr]), x[te]) >= t)
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
    layers = layer_embeddings(texts, poolings=("mean", "max"))   # (n, 2 x layers, 384)
    half = layers.shape[1] // 2
    print(f"fit split of {args.replies}: {len(fit)} replies ({pos.sum()} not polite, {short.sum()} short polite); "
          f"nested {J.CV_FOLDS}-fold CV x {args.repeats}, target recall {settings.judge_target_recall}")
    with J._one_blas_thread():
        for pool, c in CANDIDATES:
            x = (layers[:, :half] if pool == ("mean",) else layers).reshape(len(fit), -1)
            f = nested(x, y, ruled, c, settings.judge_target_recall, args.repeats)
            tp = (f & pos).sum()
            print(f"  pooling {'+'.join(pool):9s} C={c:<5g} recall {tp / (pos.sum() * len(f)):.3f}  "
                  f"precision {tp / f.sum():.3f}  fp polite {(f & ~pos).sum() / ((~pos).sum() * len(f)):.3f}  "
                  f"fp short polite {(f & short).sum() / (short.sum() * len(f)):.3f}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
