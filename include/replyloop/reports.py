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


def comparison_png(summary: dict[str, dict[str, dict[str, float]]], metrics: list[str]):
    """Grouped bars: one panel per metric, one group per evaluation set, one bar per model.
    `summary`: model -> set -> metric -> value."""
    models = list(summary)
    sets = sorted({s for per in summary.values() for s in per})
    fig, axes = plt.subplots(1, len(metrics), figsize=(3.2 * len(metrics), 3.2), squeeze=False)
    width = 0.8 / max(len(models), 1)
    for ax, metric in zip(axes[0], metrics):
        for k, model in enumerate(models):
            values = [summary[model].get(s, {}).get(metric, float("nan")) for s in sets]
            ax.bar([i + k * width for i in range(len(sets))], values, width, label=model)
        ax.set_xticks([i + width * (len(models) - 1) / 2 for i in range(len(sets))], sets)
        ax.set_title(metric)
    axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    return fig


def intervals_png(rules: list[dict]):
    """A forest plot of the paired-bootstrap intervals (candidate minus baseline; right = better) with
    the tolerance line of each rule; failing rules in red."""
    rows = [r for r in rules if r.get("ci")]
    fig, ax = plt.subplots(figsize=(7, 0.28 * len(rows) + 1.2))
    for y, r in enumerate(rows):
        color = "#2e7d32" if r["passed"] else "#c62828"
        ax.plot(r["ci"], [y, y], color=color, lw=2)
        ax.plot([r["delta"]], [y], "o", color=color, ms=4)
        tol = float(r["threshold"].rsplit("-", 1)[-1])
        ax.plot([-tol, -tol], [y - 0.4, y + 0.4], color="#555", lw=1)
    labels = [f"{r['set']}{' ' + r['slice'] if r.get('slice') else ''} {r['metric']} vs {r['baseline']}" for r in rows]
    ax.set_yticks(range(len(rows)), labels, fontsize=7)
    ax.axvline(0, color="#999", lw=0.8, ls="--")
    ax.set_xlabel("candidate - baseline (oriented: right is better; tick = -tolerance)")
    ax.invert_yaxis()
    fig.tight_layout()
    return fig


def _png_tag(fig) -> str:
    import base64
    import io

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90)
    plt.close(fig)
    return f'<img src="data:image/png;base64,{base64.b64encode(buf.getvalue()).decode()}">'


def _table(header: list[str], rows: list[list], classes: list[str] | None = None) -> str:
    esc = html.escape
    head = "".join(f"<th>{esc(str(h))}</th>" for h in header)
    body = "".join(f"<tr class={(classes or [''] * len(rows))[i]}>" + "".join(
        f"<td>{esc(str(c))}</td>" for c in row) + "</tr>" for i, row in enumerate(rows))
    return f"<table><tr>{head}</tr>{body}</table>"


def gate_report_html(decision: dict, metric_rows: list[list], metric_header: list[str],
                     rule_rows: list[list], rule_header: list[str], examples: list[dict], figures: list) -> str:
    """A page an ML lead can read alone: the decision and why, every rule with its numbers and interval,
    the metrics of every model per set and slice, the worst examples side by side, the plots."""
    esc = html.escape
    verdict = "PASSED" if decision["passed"] else "FAILED"
    reasons = "".join(f"<li>{esc(r)}</li>" for r in decision["reasons"])
    classes = ["ok" if row[-1] == "pass" else "bad" for row in rule_rows]
    ex_header = ["set", "item", "prompt", "reference", *examples[0]["replies"].keys(), "why"] if examples else []
    ex_rows = [[e["set"], e["id"], e["prompt"], e.get("reference") or "", *e["replies"].values(), e["why"]]
               for e in examples]
    sets = "".join(f"<li>{esc(k)}: {v['n']} items, sha256 {esc(v['sha256'][:16])}, {esc(v['source'])}</li>"
                   for k, v in decision["sets"].items())
    return f"""<!doctype html><html><head><meta charset="utf-8">
<title>Gate: version {esc(str(decision['candidate']))} {verdict}</title>
<style>body{{font-family:sans-serif;margin:2em}}table{{border-collapse:collapse;margin:1em 0;font-size:13px}}
td,th{{border:1px solid #ccc;padding:3px 6px;vertical-align:top}}.ok{{background:#e8f5e9}}.bad{{background:#ffebee}}
</style></head><body>
<h1>Version {esc(str(decision['candidate']))}: {verdict}</h1>
<p>Baselines: {esc(', '.join(f'{k} = {v}' for k, v in decision['baselines'].items()))}. Gate file
{esc(decision['gate_file'])}.</p><ul>{reasons}</ul>
<h2>Evaluation sets</h2><ul>{sets}</ul>
<h2>Rules</h2>{_table(rule_header, rule_rows, classes)}
<h2>Metrics per set and slice</h2><p>A slice's cell: the mean per-reply score [bootstrap interval, the gate file's confidence].</p>{_table(metric_header, metric_rows)}
<h2>Plots</h2>{''.join(_png_tag(f) for f in figures)}
<h2>Worst examples</h2>{_table(ex_header, ex_rows)}
</body></html>"""
