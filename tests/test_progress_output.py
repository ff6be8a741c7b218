"""Progress reports and table output: per-step bars, plain periodic lines in logs, tables that fit."""

from __future__ import annotations

import io
import json
import sys

import pytest
from rich.table import Table

from obliviate import TrainConfig, build_model, fit, load_data
from obliviate.progress import Progress
from obliviate.tables import TableConsole, render


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_log_lines_when_not_a_terminal(monkeypatch):
    monkeypatch.setenv("OBLIVIATE_PROGRESS_SECONDS", "0")
    out = io.StringIO()
    with Progress("job", total=4, enabled=True, stream=out) as bar:
        for i in range(4):
            bar.advance(loss=i)
    lines = out.getvalue().splitlines()
    assert lines[0].startswith("job: 1/4 (25%)") and "loss=0" in lines[0]
    assert lines[-1].startswith("job: 4/4 (100%)") and "loss=3" in lines[-1] and len(lines) == 5


def test_log_lines_are_periodic_not_per_step(monkeypatch):
    monkeypatch.setenv("OBLIVIATE_PROGRESS_SECONDS", "3600")
    out = io.StringIO()
    with Progress("job", total=1000, enabled=True, stream=out) as bar:
        for _ in range(1000):
            bar.advance()
    assert out.getvalue().splitlines() == [out.getvalue().splitlines()[0]] and "1000/1000" in out.getvalue()


def test_disabled_progress_prints_nothing(capsys):
    with Progress("job", total=3) as bar:
        bar.advance()
    assert capsys.readouterr() == ("", "")


def test_a_terminal_gets_a_bar_that_moves_per_step():
    with Progress("job", total=10, enabled=True, stream=_Tty()) as bar:
        bar.advance(3)
        assert bar._bar is not None and bar._bar.tasks[0].completed == 3


def test_training_reports_every_mini_batch(monkeypatch, capsys):
    monkeypatch.setenv("OBLIVIATE_PROGRESS_SECONDS", "3600")
    train = load_data("digits").train
    model = build_model("mlp", train.input_shape, 10, hidden=[8])
    fit(model, train, TrainConfig(epochs=2, batch_size=256), progress=True)
    steps = 2 * -(-len(train) // 256)
    assert f"train: {steps}/{steps} (100%)" in capsys.readouterr().err


def _table() -> Table:
    table = Table("method", "what it does", title="t")
    table.add_row("finetune", "fine-tune on the retain rows " * 12)
    table.add_row("a|b", "[bold]x[/bold]")
    return table


def test_formats_for_logs_and_scripts():
    assert json.loads(render(_table(), "json"))[1] == {"method": "a|b", "what it does": "x"}
    assert render(_table(), "csv").splitlines()[0] == "method,what it does"
    md = render(_table(), "markdown").splitlines()
    assert md[0] == "| method | what it does |" and md[1] == "| --- | --- |" and md[3] == "| a\\|b | x |"


def test_a_log_gets_the_whole_table(monkeypatch):
    monkeypatch.delenv("COLUMNS", raising=False)
    out = io.StringIO()
    TableConsole(file=out).print(_table())
    assert ("fine-tune on the retain rows " * 12).strip() in out.getvalue() and "…" not in out.getvalue()


def test_columns_is_honoured_and_cells_wrap(monkeypatch):
    monkeypatch.setenv("COLUMNS", "60")
    out = io.StringIO()
    TableConsole(file=out).print(_table())
    lines = out.getvalue().splitlines()
    assert max(map(len, lines)) <= 60 and "…" not in out.getvalue() and len(lines) > 6


def test_cli_format_option(monkeypatch, capsys):
    from obliviate.cli import main

    monkeypatch.setattr(sys, "argv", ["obliviate", "--format", "json", "methods"])
    with pytest.raises(SystemExit) as exit_info:
        main()
    assert exit_info.value.code in (0, None)
    rows = json.loads(capsys.readouterr().out)
    assert {"name", "reads", "scenarios"} <= set(rows[0]) and any(r["name"] == "finetune" for r in rows)
