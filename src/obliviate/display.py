"""Terminal tables of a ``Report``: each number beside its gap to the reference."""

from __future__ import annotations

import math

from rich.table import Table

from obliviate.evaluation import Report

COLUMNS = {
    "classification": ["forget_acc", "retain_acc", "test_acc", "forget_test_acc", "mia_entropy", "mia_loss_cv"],
    "regression": ["forget_mae", "retain_mae", "test_mae", "forget_test_mae", "wasserstein", "mia_loss", "mia_loss_cv"],
}


def _fmt(value: float | None, digits: int = 2) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{value:.{digits}f}"


def report_table(report: Report, columns: list[str] | None = None) -> Table:
    """One row per model: metric values with the gap to the reference in brackets."""
    columns = columns or [
        c for c in COLUMNS[report.task["kind"]] if any(c in r.metrics for r in report.models.values())
    ]
    ref = f" vs {report.reference}" if report.reference else ""
    table = Table(title=f"{report.task['dataset']} · {report.task['scenario']} forgetting{ref} (gap in brackets)")
    table.add_column("model")
    for col in columns:
        table.add_column(col, justify="right")
    for extra in ("avg gap", "seconds", "speed-up"):
        table.add_column(extra, justify="right")
    for name, res in report.models.items():
        cells = []
        for col in columns:
            value = res.metrics.get(col)
            gap = res.gaps.get(col)
            cells.append(_fmt(value) + (f" ({_fmt(gap)})" if gap is not None and name != report.reference else ""))
        cells += [_fmt(res.avg_gap), _fmt(res.seconds, 3), _fmt(res.speedup, 1) + ("x" if res.speedup else "")]
        table.add_row(name, *cells)
    return table
