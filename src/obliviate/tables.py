"""Printing tables for people and for logs: rich tables that fit the width, or JSON/CSV/Markdown.

On a terminal a table fits the window (cells wrap); with ``COLUMNS`` set it fits that many
columns; anywhere else (a log, a pipe) it is printed at its natural width, so no column is
ever cut. ``--format json|csv|markdown`` prints the same rows as data instead.
"""

from __future__ import annotations

import csv
import io
import json
import os

from rich.console import Console
from rich.measure import Measurement
from rich.table import Table
from rich.text import Text

FORMATS = ("table", "json", "csv", "markdown")


def table_rows(table: Table) -> tuple[list[str], list[list[str]]]:
    """Headers and cell texts of a rich table (markup and styles dropped)."""

    def plain(cell) -> str:
        return cell.plain if isinstance(cell, Text) else Text.from_markup(str(cell)).plain

    headers = [plain(c.header) for c in table.columns]
    columns = [[plain(cell) for cell in c.cells] for c in table.columns]
    return headers, [list(row) for row in zip(*columns, strict=True)]


def render(table: Table, fmt: str) -> str:
    """``table`` as JSON (a list of objects), CSV or a Markdown table."""
    headers, rows = table_rows(table)
    if fmt == "json":
        return json.dumps([dict(zip(headers, row, strict=True)) for row in rows], indent=1) + "\n"
    if fmt == "csv":
        out = io.StringIO()
        csv.writer(out, lineterminator="\n").writerows([headers, *rows])
        return out.getvalue()
    if fmt == "markdown":

        def line(cells: list[str]) -> str:
            return "| " + " | ".join(c.replace("|", "\\|").replace("\n", " ") for c in cells) + " |"

        return "\n".join([line(headers), line(["---"] * len(headers)), *map(line, rows)]) + "\n"
    raise ValueError(f"unknown format {fmt!r}; choose from {', '.join(FORMATS)}")


class TableConsole(Console):
    """A rich console whose tables follow ``format`` and never lose columns in a log."""

    format = "table"

    def print(self, *objects, **kwargs) -> None:
        if len(objects) != 1 or not isinstance(objects[0], Table):
            return super().print(*objects, **kwargs)
        table = objects[0]
        if self.format != "table":
            self.file.write(render(table, self.format))
            self.file.flush()
            return None
        if self.is_terminal or os.environ.get("COLUMNS", "").isdigit():
            for column in table.columns:  # wrap long words too, rather than cut them short with "…"
                column.overflow = "fold"
            return super().print(table, **kwargs)
        natural = Measurement.get(self, self.options.update_width(100_000), table).maximum
        width = self._width
        self.width = max(natural, 80)
        try:
            return super().print(table, **kwargs)
        finally:
            self._width = width
