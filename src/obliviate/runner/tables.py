"""Views of a suite's results as tables: rows are models, cells are mean +- std over seeds."""

from __future__ import annotations

from rich.table import Table

DIRECTION_MARK = {"reference": "≈ref", "higher": "↑", "lower": "↓", "info": ""}


def fmt_stat(stat: dict | None, digits: int = 2) -> str:
    if not stat:
        return "-"
    if stat["n"] > 1:
        return f"{stat['mean']:.{digits}f} ± {stat['std']:.{digits}f}"
    return f"{stat['mean']:.{digits}f}"


def cell(row: dict, metric: str, is_reference: bool) -> str:
    """``mean ± std`` with the mean gap to the reference in brackets where one is defined."""
    text = fmt_stat(row["metrics"].get(metric))
    gap = row["gaps"].get(metric)
    if gap and not is_reference:
        text += f" ({gap['mean']:.2f})"
    return text


def columns(results: dict, scenario: str, wanted: list[str] | None = None) -> list[str]:
    rows = results["summary"][scenario].values()
    present = {k for r in rows for k in r["metrics"]}
    if wanted is None:
        return sorted(present)
    return [c for c in wanted if c in present]


def terminal_tables(results: dict) -> list[Table]:
    """One table per scenario: metrics as rows (with their direction), models as columns."""
    seeds = results["suite"]["seeds"]
    tables = []
    for scenario, rows in results["summary"].items():
        table = Table(
            title=f"{results['suite']['name']} · {scenario} · mean ± std over {len(seeds)} seed(s) "
            f"(gap to retrain in brackets)"
        )
        table.add_column("metric", no_wrap=True)
        for name in rows:
            table.add_column(name, justify="right", no_wrap=True)
        for col in columns(results, scenario):
            mark = DIRECTION_MARK.get(results["directions"].get(col, ""), "")
            table.add_row(f"{col} {mark}".strip(), *[cell(row, col, name == "retrain") for name, row in rows.items()])
        for field, label, digits in (
            ("avg_gap", "avg gap ↓", 2),
            ("seconds", "seconds", 3),
            ("speedup", "speed-up", 1),
        ):
            table.add_row(label, *[fmt_stat(row[field], digits) for row in rows.values()])
        tables.append(table)
    return tables
