"""Regression and forecasting unlearning benchmark: every regression method against retraining.

Scenarios: Wage (age as target, forget ages 18-30, target-scaled MLP) and elecdemand (hourly
demand, forget the 14-18 January 2014 heatwave, days 13-18, LSTM). For each seed (which sets
the split, the initialisation and the methods' randomness) the original is trained, the
reference retrained on the retain rows, and each method run on the same original; all timings
come from the same run, so the speed-up = retrain seconds / method seconds.

    PYTHONPATH=src python bench/regression.py --seeds 0,1,2 --json out/bench_regression.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from dataclasses import dataclass

import torch
from overrides import method_overrides

from obliviate.atomic import atomic_write_text
from obliviate.data import load_data
from obliviate.demos.regression import PRESETS, REGRESSION_METHODS
from obliviate.evaluation import evaluate
from obliviate.forget import ForgetSpec, UnlearningTask
from obliviate.methods import unlearn
from obliviate.models import build_model
from obliviate.models.forecasting import target_scale
from obliviate.training import fit

METRICS = ("forget_mae", "retain_mae", "test_mae", "forget_test_mae", "wasserstein", "mia_loss")
COLUMNS = (*METRICS, "seconds", "speedup")


@dataclass(frozen=True)
class Scenario:
    name: str
    preset: str
    spec: ForgetSpec


SCENARIOS = {
    "wage": Scenario("wage, ages 18-30 (MLP)", "regression", PRESETS["regression"].spec),
    "elecdemand": Scenario("elecdemand, days 13-18 (LSTM)", "forecasting", PRESETS["forecasting"].spec),
}


def run_seed(scenario: Scenario, seed: int, methods: tuple[str, ...], overrides: dict[str, dict]) -> dict:
    """Original, retrained reference and every method on one seed; metrics per model."""
    preset = PRESETS[scenario.preset]
    split = load_data(preset.data, seed=seed)
    task = UnlearningTask.build(split, scenario.spec)
    recipe = preset.recipe.model_copy(update={"seed": seed})
    torch.manual_seed(seed)
    model = build_model(
        "scaled", split.train.input_shape, 1, base=preset.base, **target_scale(split.train), **preset.model_kwargs
    )
    original = fit(model, split.train, recipe).model
    models, logs = {"original": original}, {}
    for name in ("retrain", *methods):
        config = {"recipe": recipe} if name == "retrain" else overrides.get(name, {})
        result = unlearn(original, task, name, seed=seed, **config)
        models[name], logs[name] = result.model, result.log
    report = evaluate(task, models, logs=logs, seed=seed, metrics=list(METRICS))
    rows = {
        name: {**res.metrics, "seconds": res.seconds, "speedup": res.speedup} for name, res in report.models.items()
    }
    rows["_sizes"] = report.task["sizes"]
    return rows


def mean_std(values: list[float | None]) -> str:
    values = [v for v in values if v is not None]
    if not values:
        return "-"
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.fmean(values):.3f} ± {std:.3f}"


def table(runs: list[dict], names: list[str]) -> str:
    lines = ["| model | " + " | ".join(COLUMNS) + " |", "|---" * (len(COLUMNS) + 1) + "|"]
    for name in names:
        cells = [mean_std([run[name].get(c) for run in runs]) for c in COLUMNS]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def pattern(runs: list[dict]) -> str:
    """The published pattern: Blindspot's W1 to retrain about half fine-tuning's, forget MAE near retrain's."""
    ratios = [run["blindspot"]["wasserstein"] / run["finetune"]["wasserstein"] for run in runs]
    per_seed = ", ".join(f"{r:.2f}" for r in ratios)
    gaps = {
        name: statistics.fmean(abs(run[name]["forget_mae"] - run["retrain"]["forget_mae"]) for run in runs)
        for name in ("original", "finetune", "gaussian_finetune", "blindspot")
        if name in runs[0]
    }
    return (
        f"W1(blindspot) / W1(finetune) per seed: {per_seed} (mean {statistics.fmean(ratios):.2f})\n"
        "|forget MAE - retrain's|, mean over seeds: " + ", ".join(f"{k} {v:.3f}" for k, v in gaps.items())
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--scenarios", default="wage,elecdemand")
    parser.add_argument("--methods", default=",".join(REGRESSION_METHODS))
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--set", action="append", default=[], help="METHOD.KEY=VALUE config override (JSON value)")
    parser.add_argument("--json", default=None, help="write every per-seed number here")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    seeds = [int(s) for s in args.seeds.split(",")]
    methods = tuple(m for m in args.methods.split(",") if m)
    names = ["original", "retrain", *methods]
    overrides = method_overrides(args.set)
    if overrides:
        print(f"config overrides: {overrides}")
    results = {}
    for key in args.scenarios.split(","):
        scenario = SCENARIOS[key]
        start = time.perf_counter()
        runs = [run_seed(scenario, seed, methods, overrides) for seed in seeds]
        results[key] = runs
        sizes = runs[0]["_sizes"]
        print(f"\n### {scenario.name}: {scenario.spec.describe()}")
        print(
            f"seeds {seeds}; rows forget {sizes['forget']}, retain {sizes['retain']}, test {sizes['test']}, "
            f"forget-test {sizes['forget_test']} (seed {seeds[0]}); mean ± std over seeds; "
            f"{time.perf_counter() - start:.0f}s wall\n"
        )
        print(table(runs, names))
        if {"blindspot", "finetune"} <= set(methods):
            print("\n" + pattern(runs))
    if args.json:
        atomic_write_text(args.json, json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
