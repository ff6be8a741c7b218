"""Benchmark every classification unlearning method against retraining (issue 3).

For each scenario (full class, sub-class, random 10%) and seed: train the original model,
retrain the reference on the retain set, run every method on the same task, and evaluate them
together with ``obliviate.evaluate`` so gaps and speed-ups come from one run on one machine.
Prints per method the mean over seeds of forget/retain/test accuracy and ``mia_entropy``, each
beside retrain's, the Avg Gap and the speed-up over retraining.

    PYTHONPATH=src python bench/classification.py                      # MNIST-5k, 3 scenarios, 3 seeds
    PYTHONPATH=src python bench/classification.py --data digits --seeds 0 --scenarios class
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import time
from collections import defaultdict

import torch

from obliviate import ForgetSpec, TrainConfig, UnlearningTask, build_model, evaluate, fit, load_data, unlearn
from obliviate.data import DataSplit
from obliviate.methods import REGISTRY

METHODS = [
    "finetune",
    "gradient_ascent",
    "neggrad_plus",
    "random_labels",
    "amnesiac",
    "boundary_shrink",
    "l1_sparse",
    "salun",
    "scrub",
    "ssd",
    "bad_teacher",
    "unsir",
]
SCENARIOS = ("class", "subclass", "random")
DIGIT_GROUPS = [[0, 6, 8, 9], [1, 4, 7], [2, 3, 5]]
"""Super-classes for sub-class forgetting: loops, strokes, curves; forget digit 3 of group 2."""
RECIPES = {
    "digits": TrainConfig(optimizer="adam", lr=2e-3, epochs=12, batch_size=64),
    "mnist5k": TrainConfig(optimizer="adam", lr=3e-3, epochs=12, batch_size=64),
}
COLUMNS = ("forget_acc", "retain_acc", "test_acc", "mia_entropy")


def scenario_task(data: str, scenario: str, seed: int) -> UnlearningTask:
    split = load_data(data, seed=seed)
    if scenario == "class":
        return UnlearningTask.build(split, ForgetSpec(classes=[3]))
    if scenario == "subclass":
        grouped = DataSplit(split.train.group_classes(DIGIT_GROUPS), split.test.group_classes(DIGIT_GROUPS))
        return UnlearningTask.build(grouped, ForgetSpec(subclass=(2, 3)))
    return UnlearningTask.build(split, ForgetSpec(fraction=0.1, seed=seed))


def train_original(task: UnlearningTask, data: str, seed: int, model_name: str, width: int):
    """The original model and its recipe; class and random forgetting share one per seed."""
    recipe = RECIPES.get(data, RECIPES["mnist5k"]).model_copy(update={"seed": seed})
    torch.manual_seed(seed)  # fit seeds the shuffling, not the initial weights
    model = build_model(model_name, task.input_shape, task.num_outputs, width=width)
    return fit(model, task.train, recipe).model, recipe


def run_one(task: UnlearningTask, original, recipe: TrainConfig, seed: int, methods: list[str]) -> dict[str, dict]:
    """Metrics, Avg Gap and speed-up of every method (and original, retrain) on one task."""
    models, logs = {"original": original}, {}
    for name in ["retrain", *methods]:
        if task.spec.scenario not in REGISTRY[name].scenarios:
            continue
        config = {"recipe": recipe} if name == "retrain" else {}
        result = unlearn(original, task, name, seed=seed, **config)
        models[name], logs[name] = result.model, result.log
    report = evaluate(task, models, logs=logs, seed=seed)
    return {
        name: {**{k: res.metrics[k] for k in COLUMNS}, "avg_gap": res.avg_gap, "speedup": res.speedup, "s": res.seconds}
        for name, res in report.models.items()
    }


def _mean(values: list[float | None]) -> float:
    values = [v for v in values if v is not None and not math.isnan(v)]
    return statistics.fmean(values) if values else math.nan


def _cell(values: list[float | None], digits: int = 1) -> str:
    values = [v for v in values if v is not None and not math.isnan(v)]
    if not values:
        return "-"
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.fmean(values):.{digits}f}±{sd:.{digits}f}"


def print_table(scenario: str, runs: list[dict[str, dict]]) -> None:
    by_method: dict[str, dict[str, list]] = defaultdict(lambda: defaultdict(list))
    for run in runs:
        for name, values in run.items():
            for key, value in values.items():
                by_method[name][key].append(value)
    ref = by_method["retrain"]
    header = ["method", *(f"{c} (retrain)" for c in COLUMNS), "avg gap", "seconds", "speed-up"]
    print(f"\n## {scenario} forgetting ({len(runs)} seed(s); mean±sd over seeds)")
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for name, vals in by_method.items():
        cells = [f"{_cell(vals[c])} ({_mean(ref[c]):.1f})" for c in COLUMNS]
        speed = _cell(vals["speedup"]) + "x" if name not in ("original", "retrain") else "-"
        gap = _cell(vals["avg_gap"], 2) if name != "original" else _cell(vals["avg_gap"], 2)
        print(f"| {name} | " + " | ".join(cells) + f" | {gap} | {_cell(vals['s'], 2)} | {speed} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="mnist5k")
    parser.add_argument("--model", default="cnn", help="architecture with a width option (cnn, allcnn)")
    parser.add_argument("--width", type=int, default=16, help="channel width of the small CNN")
    parser.add_argument("--seeds", default="0,1,2", help="comma-separated seeds")
    parser.add_argument("--scenarios", default=",".join(SCENARIOS))
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (the machine is shared)")
    parser.add_argument("--json", default=None, help="also write all per-seed results here")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    seeds = [int(s) for s in args.seeds.split(",")]
    methods = [m for m in args.methods.split(",") if m]
    unknown = [m for m in methods if m not in REGISTRY]
    if unknown:
        parser.error(f"unknown methods {unknown}")
    start = time.perf_counter()
    everything = {}
    print(f"# {args.data} · {args.model} width {args.width} · seeds {seeds} · torch threads {args.threads}")
    originals = {}
    for scenario in args.scenarios.split(","):
        if scenario not in SCENARIOS:
            parser.error(f"unknown scenario {scenario!r}; choose from {SCENARIOS}")
        runs = []
        for seed in seeds:
            task = scenario_task(args.data, scenario, seed)
            key = (seed, scenario == "subclass")
            if key not in originals:
                originals[key] = train_original(task, args.data, seed, args.model, args.width)
            runs.append(run_one(task, *originals[key], seed, methods))
        everything[scenario] = runs
        print_table(scenario, runs)
    print(f"\ntotal {time.perf_counter() - start:.0f}s")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(everything, fh, indent=1)


if __name__ == "__main__":
    main()
