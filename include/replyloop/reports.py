"""Figures and HTML reports logged to MLflow: loss curves and the gate's comparison."""

from __future__ import annotations

import html

import matplotlib

matplotlib.use("Agg")  # headless: workers have no display
import matplotlib.pyplot as plt  # noqa: E402


def loss_curve_png(history: dict[str, list[tuple[int, float]]]):
    fig, ax = plt.subplots(figsize=(6, 3.5))
    for name, points in history.items():
        if points:
            xs, ys = zip(*points)
            ax.plot(xs, ys, marker="o" if len(xs) < 20 else None, label=name)
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("loss")
    ax.set_title("LoRA fine-tuning")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    return fig


def comparison_png(metrics: dict[str, dict[str, float]], names: list[str]):
    """Grouped bars, one group per metric, one bar per model."""
    models = list(metrics)
    fig, axes = plt.subplots(1, len(names), figsize=(3 * len(names), 3.2))
    for ax, name in zip(axes if len(names) > 1 else [axes], names):
        values = [metrics[m].get(name, float("nan")) for m in models]
        ax.bar(models, values, color=["#4c72b0", "#dd8452", "#55a868"][: len(models)])
        ax.set_title(name)
        ax.tick_params(axis="x", rotation=20)
    fig.tight_layout()
    return fig


def gate_report_html(decision: dict, samples: list[dict]) -> str:
    """A page an ML lead can read: the decision, each rule, the metrics side by side, sample replies."""
    esc = html.escape
    rows = "".join(
        f"<tr class={'ok' if r['passed'] else 'bad'}><td>{esc(r['rule'])}</td><td>{esc(str(r['value']))}</td>"
        f"<td>{esc(str(r['threshold']))}</td><td>{'pass' if r['passed'] else 'FAIL'}</td></tr>"
        for r in decision["rules"])
    models = list(decision["metrics"])
    names = sorted({k for m in decision["metrics"].values() for k in m})
    mrows = "".join("<tr><td>" + esc(n) + "</td>" + "".join(
        f"<td>{decision['metrics'][m].get(n, float('nan')):.4f}</td>" for m in models) + "</tr>" for n in names)
    srows = "".join(
        f"<tr><td>{esc(s['set'])}</td><td>{esc(s['prompt'])}</td><td>{esc(s.get('reference') or '')}</td>"
        + "".join(f"<td>{esc(s[m])}</td>" for m in models) + "</tr>" for s in samples)
    verdict = "PASSED: promoted" if decision["passed"] else "FAILED: not promoted"
    return f"""<!doctype html><html><head><meta charset="utf-8"><title>Gate: version {esc(str(decision['candidate']))}</title>
<style>body{{font-family:sans-serif;margin:2em}}table{{border-collapse:collapse;margin:1em 0}}
td,th{{border:1px solid #ccc;padding:4px 8px;vertical-align:top}}.ok{{background:#e8f5e9}}.bad{{background:#ffebee}}</style>
</head><body><h1>Version {esc(str(decision['candidate']))} vs {esc(decision['baseline'])}: {verdict}</h1>
<h2>Rules</h2><table><tr><th>rule</th><th>value</th><th>threshold</th><th>result</th></tr>{rows}</table>
<h2>Metrics</h2><table><tr><th>metric</th>{''.join(f'<th>{esc(m)}</th>' for m in models)}</tr>{mrows}</table>
<h2>Sample replies</h2><table><tr><th>set</th><th>prompt</th><th>reference</th>
{''.join(f'<th>{esc(m)}</th>' for m in models)}</tr>{srows}</table></body></html>"""
