"""Run a suite: cached references first, then every (scenario, method, seed) job, saved as it finishes.

Each finished job is written to ``OUT/jobs/<key>.json`` (atomically) and ``results.json`` is
rewritten, so an interrupted run loses at most the jobs in flight; the next run skips every job
whose key (a hash of all that shapes its result) already has a file.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from obliviate.atomic import atomic_write_text
from obliviate.metrics.lira import lira_settings
from obliviate.progress import Progress
from obliviate.records import versions
from obliviate.runner.executor import SerialExecutor
from obliviate.runner.jobs import (
    LOSS_EDGES,
    Job,
    metric_options,
    run_method,
    train_lira_shadow,
    train_original,
    train_retrain,
)
from obliviate.runner.suite import Suite

BASE_ROWS = ("original", "retrain")


@dataclass
class SuiteRun:
    results: dict
    path: Path
    ran: int
    reused: int


def _stats(values: list[float]) -> dict[str, float] | None:
    vals = [v for v in values if v is not None and not math.isnan(v)]
    if not vals:
        return None
    return {"mean": float(np.mean(vals)), "std": float(np.std(vals, ddof=1)) if len(vals) > 1 else 0.0, "n": len(vals)}


def summarize(records: list[dict], suite: Suite) -> dict:
    """Mean and std over seeds of every metric, gap, time and speed-up, per scenario and model row."""
    summary: dict = {}
    for scenario in suite.scenarios:
        rows: dict[str, list[dict]] = {}
        for seed in suite.seeds:
            recs = [r for r in records if r["scenario"] == scenario.name and r["seed"] == seed]
            for i, rec in enumerate(recs):
                for name, res in rec["report"]["models"].items():
                    if name in BASE_ROWS and i > 0:
                        continue  # the same cached model appears in every method's record of this seed
                    rows.setdefault(name, []).append(res)
        order = [*BASE_ROWS, *[m.key for m in suite.methods]]
        out = {}
        for name in [n for n in order if n in rows]:
            results = rows[name]
            metrics = sorted({k for r in results for k in r["metrics"]})
            gaps = sorted({k for r in results for k in r["gaps"]})
            out[name] = {
                "metrics": {k: _stats([r["metrics"].get(k) for r in results]) for k in metrics},
                "gaps": {k: _stats([r["gaps"].get(k) for r in results]) for k in gaps},
                **{f: _stats([r.get(f) for r in results]) for f in ("avg_gap", "seconds", "steps", "speedup")},
            }
        summary[scenario.name] = out
    return summary


def build_results(suite: Suite, records: list[dict], executor: str, device: str = "cpu") -> dict:
    directions: dict[str, str] = {}
    for rec in records:
        directions.update(rec["report"]["directions"])
    return {
        "suite": suite.model_dump(mode="json"),
        "config_hash": suite.config_hash(),
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "versions": versions(),
        "executor": executor,
        "device": device,
        "loss_edges": LOSS_EDGES.tolist(),
        "directions": directions,
        "summary": summarize(records, suite),
        "records": sorted(records, key=lambda r: (r["scenario"], r["method"], r["seed"])),
    }


def run_suite(
    suite: Suite,
    out: str | Path,
    *,
    executor=None,
    cache_dir: str | Path | None = None,
    resume: bool = True,
    progress: bool = False,
    device: str = "cpu",
) -> SuiteRun:
    """Run ``suite`` into directory ``out`` (``results.json`` and ``jobs/``) with every model on
    ``device``; see the module doc."""
    executor = executor or SerialExecutor()
    out = Path(out)
    jobs_dir = out / "jobs"
    jobs_dir.mkdir(parents=True, exist_ok=True)
    cache = str(cache_dir or out / "cache")
    method_jobs = [
        Job(suite, cache, seed, sc.name, m.key, device=device)
        for sc in suite.scenarios
        for m in suite.methods
        for seed in suite.seeds
    ]
    records: dict[str, dict] = {}
    if resume:
        for job in method_jobs:
            path = jobs_dir / f"{job.key}.json"
            if path.exists():
                records[job.key] = json.loads(path.read_text())
    reused = len(records)
    pending = [j for j in method_jobs if j.key not in records]
    results_path = out / "results.json"

    def save(_i: int, record: dict) -> None:
        atomic_write_text(jobs_dir / f"{record['key']}.json", json.dumps(record))
        records[record["key"]] = record
        atomic_write_text(results_path, json.dumps(build_results(suite, list(records.values()), executor.name, device)))

    if pending:
        seeds = sorted({j.seed for j in pending})
        pairs = sorted({(j.scenario, j.seed) for j in pending})
        phases = [
            ("originals", train_original, [Job(suite, cache, s, device=device) for s in seeds], None),
            ("retrained references", train_retrain, [Job(suite, cache, s, sc, device=device) for sc, s in pairs], None),
        ]
        if suite.uses_lira:
            k, _ = lira_settings(metric_options(suite))
            shadows = [Job(suite, cache, s, shadow=i, device=device) for s in seeds for i in range(k)]
            phases.append(("LiRA shadow models", train_lira_shadow, shadows, None))
        phases.append(("methods", run_method, pending, save))
        for label, fn, items, on_result in phases:
            with Progress(label, total=len(items), enabled=progress) as bar:

                def done(i, result, on_result=on_result, bar=bar):
                    if on_result is not None:
                        on_result(i, result)
                    bar.advance()

                executor.map(fn, items, done)
    results = build_results(suite, list(records.values()), executor.name, device)
    atomic_write_text(results_path, json.dumps(results, indent=1))
    return SuiteRun(results, results_path, len(pending), reused)
