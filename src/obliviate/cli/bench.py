"""``obliviate bench SUITE.yaml``: run a benchmark suite and write results.json and report.html."""

from __future__ import annotations

import time
from pathlib import Path

import typer

from obliviate.cli.app import app, console
from obliviate.cli.devices import DeviceOpt, resolve_device


@app.command()
def bench(
    suite_file: Path = typer.Argument(..., help="suite YAML: data, model, recipe, scenarios, methods, seeds"),
    out: Path = typer.Option(None, "--out", help="output directory (default: runs/<suite name>)"),
    cache: Path = typer.Option(
        Path(".obliviate-cache"), "--cache", help="cache of original and retrained models, shared between runs"
    ),
    executor: str = typer.Option("serial", "--executor", help="serial (in this process) or ray"),
    ray_address: str = typer.Option(None, "--ray-address", help="address of a running Ray cluster"),
    fresh: bool = typer.Option(False, "--fresh", help="ignore finished jobs of an earlier run (cache still used)"),
    device: str = DeviceOpt,
) -> None:
    """Run scenarios x methods x seeds; resumes an interrupted run and reuses cached references."""
    from obliviate.runner.executor import make_executor
    from obliviate.runner.html import write_html
    from obliviate.runner.run import run_suite
    from obliviate.runner.suite import Suite
    from obliviate.runner.tables import terminal_tables

    where = str(resolve_device(device))
    suite = Suite.load(suite_file)
    out = out or Path("runs") / suite.name
    start = time.perf_counter()
    run = run_suite(
        suite,
        out,
        executor=make_executor(executor, ray_address),
        cache_dir=cache,
        resume=not fresh,
        progress=True,
        device=where,
    )
    for table in terminal_tables(run.results):
        console.print(table)
    html_path = write_html(run.results, out / "report.html")
    console.print(
        f"{run.ran} job(s) run, {run.reused} reused · {time.perf_counter() - start:.1f}s · {run.path} · {html_path}"
    )
