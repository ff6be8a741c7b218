"""Terminal tables of a ``Report``: each number beside its gap to the reference, and the verdict."""

from __future__ import annotations

import math

from rich.table import Table

from obliviate.records import Report

COLUMNS = {
    "classification": ["forget_acc", "retain_acc", "test_acc", "forget_test_acc", "mia_entropy", "mia_loss_cv"],
    "regression": ["forget_mae", "retain_mae", "test_mae", "forget_test_mae", "wasserstein", "mia_loss", "mia_loss_cv"],
}


HEADERS = {
    "mia_entropy": "mia_entropy\n% forget called member",
    "mia_loss_cv": "mia_loss_cv\nattack acc %, 50 = like unseen",
    "mia_loss": "mia_loss\n% forget called member",
}
"""Every MIA column says what its number counts, so none reads backwards."""


def _fmt(value: float | None, digits: int = 2) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{value:.{digits}f}"


def report_table(report: Report, columns: list[str] | None = None) -> Table:
    """One row per model: metric values with the gap to the reference in brackets."""
    columns = columns or [
        c for c in COLUMNS[report.task["kind"]] if any(c in r.metrics for r in report.models.values())
    ]
    where = f"{report.task['dataset']} · {report.task['scenario']} forgetting"
    if report.reference:
        title = f"{where} vs {report.reference} (gap in brackets)"
    else:
        title = f"{where} · no retrained model: verdict from never-seen rows"
    table = Table(title=title)
    table.add_column("model")
    for col in columns:
        table.add_column(HEADERS.get(col, col), justify="right")
    extras = (("avg gap",) if report.reference else ()) + ("verdict", "seconds")
    extras += ("speed-up",) if report.reference else ()
    for extra in extras:
        table.add_column(extra, justify="right")
    for name, res in report.models.items():
        cells = []
        for col in columns:
            value = res.metrics.get(col)
            gap = res.gaps.get(col)
            cells.append(_fmt(value) + (f" ({_fmt(gap)})" if gap is not None and name != report.reference else ""))
        if report.reference:
            cells.append(_fmt(res.avg_gap))
        cells.append(verdict_cell(report.verdicts.get(name)))
        cells.append(_fmt(res.seconds, 3))
        if report.reference:
            cells.append(_fmt(res.speedup, 1) + ("x" if res.speedup else ""))
        table.add_row(name, *cells)
    return table


def verdict_cell(verdict: dict | None) -> str:
    """``pass 0.42``: the reference-free status and score (<= 1 passes)."""
    if not verdict:
        return "-"
    return f"{verdict['status']} {_fmt(verdict['score'])}"
