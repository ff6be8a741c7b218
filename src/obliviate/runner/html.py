"""``report.html``: one self-contained page (tables and base64 PNG plots, no external files)."""

from __future__ import annotations

import html
from pathlib import Path

from obliviate.atomic import atomic_write_text
from obliviate.runner import plots
from obliviate.runner.tables import DIRECTION_MARK, cell, columns, fmt_stat

STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em; color: #222; max-width: 1400px; }
table { border-collapse: collapse; margin: 1em 0; font-size: 0.85em; }
th, td { border: 1px solid #ccc; padding: 0.3em 0.6em; text-align: right; white-space: nowrap; }
th:first-child, td:first-child { text-align: left; }
th { background: #f0f0f0; }
th.ref { background: #dcefdc; }
.meta { color: #555; font-size: 0.9em; }
img { max-width: 100%; display: block; margin: 1em 0; }
.scroll { overflow-x: auto; }
"""


def _img(data: str | None, alt: str) -> str:
    if data is None:
        return ""
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{data}">'


def _table(results: dict, scenario: str) -> str:
    """Metrics as rows and models as columns, so many metrics stay readable."""
    rows = results["summary"][scenario]
    head = "".join(f"<th{' class=ref' if n == 'retrain' else ''}>{html.escape(n)}</th>" for n in rows)
    body = []
    for c in columns(results, scenario):
        mark = DIRECTION_MARK.get(results["directions"].get(c, ""), "")
        cells = "".join(f"<td>{html.escape(cell(row, c, name == 'retrain'))}</td>" for name, row in rows.items())
        body.append(f"<tr><td>{html.escape(c)} {mark}</td>{cells}</tr>")
    for field, label, digits in (("avg_gap", "avg gap ↓", 2), ("seconds", "seconds", 3), ("speedup", "speed-up", 1)):
        cells = "".join(f"<td>{html.escape(fmt_stat(row[field], digits))}</td>" for row in rows.values())
        body.append(f"<tr><td>{label}</td>{cells}</tr>")
    return f'<div class="scroll"><table><tr><th>metric</th>{head}</tr>{"".join(body)}</table></div>'


def render_html(results: dict) -> str:
    suite = results["suite"]
    title = f"Obliviate benchmark: {suite['name']}"
    parts = [
        f"<h1>{html.escape(title)}</h1>",
        f'<p class="meta">data {html.escape(suite["data"])} · model {html.escape(suite["architecture"])} · '
        f"seeds {html.escape(str(suite['seeds']))} · executor {html.escape(results['executor'])} · "
        f"config hash {results['config_hash']} · created {results['created']} · "
        f"versions {html.escape(', '.join(f'{k} {v}' for k, v in results['versions'].items()))}</p>",
        "<p>Cells are mean ± std over seeds; the bracket is the mean gap to the retrained model. "
        "≈ref: closer to the retrained model is better; ↑ higher is better; ↓ lower is better.</p>",
        "<h2>Quality vs cost</h2>",
        _img(plots.metric_vs_time(results), "metric vs time"),
    ]
    for scenario in results["summary"]:
        spec = next(s["spec"] for s in suite["scenarios"] if s["name"] == scenario)
        parts += [
            f"<h2>Scenario {html.escape(scenario)}</h2>",
            f'<p class="meta">forget spec {html.escape(str({k: v for k, v in spec.items() if v is not None}))}</p>',
            _table(results, scenario),
            _img(plots.per_class_accuracy(results, scenario), f"per-class accuracy {scenario}"),
            _img(plots.loss_histograms(results, scenario), f"loss histograms {scenario}"),
        ]
    return (
        f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
        f"<style>{STYLE}</style></head><body>{''.join(parts)}</body></html>"
    )


def write_html(results: dict, path: str | Path) -> Path:
    path = Path(path)
    atomic_write_text(path, render_html(results))
    return path
