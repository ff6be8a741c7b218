"""``method="auto"`` against retraining in the same run (issue 14).

Protocol of ``bench/classification.py`` (its task, recipe and table helpers are imported): a
training seed fixes the split, the random forget set and the original; for every unlearning
seed the reference is retrained and ``auto`` runs right after it, both timed by wall clock and
CPU time. ``auto`` gets the recipe and estimates the retraining time itself, as a user would
(the estimate is part of its time). Avg Gap is taken against the mean of the retrained models;
for random forgetting, the unlearning seeds' models form the ensembles for F and U-LiRA.

When nothing passes, ``auto`` returns no model and the user has to retrain: such a run is
scored as its retrained model, at the cost of ``auto``'s time plus retraining, and counted in
the ``passed`` column, so a failing search cannot look good.

    PYTHONPATH=src OMP_NUM_THREADS=1 python bench/auto_vs_retrain.py --data mnist5k --scenarios class,random
"""

from __future__ import annotations

import argparse
import json
import time
from collections import Counter, defaultdict

import torch
from classification import COLUMNS, RECIPES, print_rows, scenario_task, summarize

from obliviate import UnlearningTask, build_model, evaluate, fit, unlearn
from obliviate.auto import AutoError
from obliviate.metrics.forgetting_quality import score_model

MODELS = {"mnist1d": ("mlp", {})}
"""Flat 40-point signals get the MLP (the framework has no 1-D CNN); images the benchmark's cnn."""


def train_original(task: UnlearningTask, data: str, seed: int, width: int):
    name, kwargs = MODELS.get(data, ("cnn", {"width": width}))
    recipe = RECIPES.get(data, RECIPES["mnist5k"]).model_copy(update={"seed": seed})
    model = build_model(name, task.input_shape, task.num_outputs, seed=seed, **kwargs)
    return fit(model, task.train, recipe).model, recipe


def timed(fn):
    """``fn()`` with its wall and CPU seconds."""
    wall, cpu = time.perf_counter(), time.process_time()
    out = fn()
    return out, time.perf_counter() - wall, time.process_time() - cpu


def run_training_seed(task, original, recipe, unlearn_seeds: list[int], budget: float, privacy: bool) -> dict:
    """Retrain and auto under every unlearning seed; per model, the mean metrics, Avg Gap to the
    mean retrained model, speed-ups (wall, CPU), how often auto passed, and F / U-LiRA."""
    runs, scores, chose = defaultdict(list), defaultdict(list), []
    for useed in unlearn_seeds:
        ref, ref_wall, ref_cpu = timed(lambda s=useed: unlearn(original, task, "retrain", seed=s, recipe=recipe))

        wall, cpu = time.perf_counter(), time.process_time()
        try:
            auto = unlearn(original, task, "auto", seed=useed, recipe=recipe, budget=budget)
            model, passed = auto.model, True
            chose.append(auto.log.details["chosen"]["method"])
            print(f"  seed {useed}: auto {json.dumps(auto.log.details['search'])}", flush=True)
        except AutoError as exc:
            model, passed = ref.model, False
            chose.append("retrain (nothing passed)")
            print(f"  seed {useed}: {exc}", flush=True)
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        if not passed:  # the user retrains after the failed search: both costs count
            wall, cpu = wall + ref_wall, cpu + ref_cpu
        models = {"original": original, "retrain": ref.model, "auto": model}
        report = evaluate(task, models, metrics=list(COLUMNS), seed=useed)
        times = {"retrain": (ref_wall, ref_cpu), "auto": (wall, cpu)}
        for name, res in report.models.items():
            row = {k: res.metrics[k] for k in COLUMNS}
            if name in times:
                w, c = times[name]
                row.update(s=w, speedup=ref_wall / w, cpu_speedup=ref_cpu / c)
            if name == "auto":
                row.update(passed=float(passed), verdict=float(report.verdicts["auto"]["passed"]))
            runs[name].append(row)
            if privacy:
                scores[name].append(score_model(models[name], task))
    out = summarize(runs, scores if privacy else None)
    out["auto"]["chose"] = chose
    return out


def print_table(scenario: str, per_seed: list[dict], privacy: bool) -> None:
    by_model = print_rows(scenario, per_seed, privacy, {"auto passed": "passed", "verdict passed": "verdict"})
    chosen = Counter(c for seed in by_model["auto"]["chose"] for c in seed)
    print(f"\nauto chose: {', '.join(f'{m} x{n}' for m, n in chosen.most_common())}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="mnist5k", choices=["mnist5k", "mnist1d", "digits"])
    parser.add_argument("--width", type=int, default=16, help="channel width of the cnn (image data)")
    parser.add_argument("--seeds", default="0,1,2", help="training seeds (data split, forget set, original)")
    parser.add_argument("--unlearn-seeds", default="100,101,102", help="unlearning (and retraining) seeds")
    parser.add_argument("--scenarios", default="class,random")
    parser.add_argument("--budget", type=float, default=0.2, help="auto's budget, a fraction of retraining time")
    parser.add_argument("--json", default=None, help="also write all per-seed results here")
    args = parser.parse_args()
    torch.set_num_threads(1)
    seeds = [int(s) for s in args.seeds.split(",")]
    unlearn_seeds = [int(s) for s in args.unlearn_seeds.split(",")]
    scenarios = args.scenarios.split(",")
    if bad := [s for s in scenarios if s not in ("class", "random")]:
        parser.error(f"unknown scenarios {bad}")
    privacy = len(unlearn_seeds) >= 3
    model = MODELS.get(args.data, ("cnn", {"width": args.width}))
    print(
        f"# auto vs retrain · {args.data} · {model[0]} {model[1]} · training seeds {seeds} · unlearning seeds "
        f"{unlearn_seeds} · auto budget {args.budget} x retraining · torch threads 1"
    )
    start = time.perf_counter()
    originals, everything = {}, {}
    for scenario in scenarios:
        per_seed = []
        for seed in seeds:
            task = scenario_task(args.data, scenario, seed)
            if seed not in originals:
                originals[seed] = train_original(task, args.data, seed, args.width)
            print(f"{scenario} · training seed {seed}", flush=True)
            per_seed.append(run_training_seed(task, *originals[seed], unlearn_seeds, args.budget, privacy))
        everything[scenario] = per_seed
        print_table(scenario, per_seed, privacy and scenario == "random")
    print(f"\ntotal {time.perf_counter() - start:.0f}s")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(everything, fh, indent=1)


if __name__ == "__main__":
    main()
