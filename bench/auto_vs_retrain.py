"""``method="auto"`` against retraining in the same run (issue 14).

For each seed and scenario (class 3, random 10%): train the original, retrain the reference,
run ``auto`` (budget 0.2 of the measured retraining time), and evaluate the original and auto
against the reference. Prints Avg Gap, forget/retain/test accuracy, the verdict, what auto chose
and the speed-up over retraining, mean over seeds.

    PYTHONPATH=src OMP_NUM_THREADS=1 python bench/auto_vs_retrain.py --data digits --seeds 0,1,2
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

from obliviate import ForgetSpec, TrainConfig, UnlearningTask, build_model, evaluate, fit, load_data, unlearn
from obliviate.auto import AutoError

RECIPES = {
    "digits": TrainConfig(optimizer="adam", lr=2e-3, epochs=12, batch_size=64),
    "mnist5k": TrainConfig(optimizer="adam", lr=3e-3, epochs=10, batch_size=64),
}
SPECS = {"class": lambda seed: ForgetSpec(classes=[3]), "random": lambda seed: ForgetSpec(fraction=0.1, seed=seed)}
COLUMNS = ("forget_acc", "retain_acc", "test_acc", "mia_entropy")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="digits")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--budget", type=float, default=0.2)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    recipe = RECIPES.get(args.data, RECIPES["digits"])
    rows = []
    for seed in [int(s) for s in args.seeds.split(",")]:
        split = load_data(args.data, seed=seed)
        rec = recipe.model_copy(update={"seed": seed})
        net = build_model("cnn", split.train.input_shape, split.train.num_classes, seed=seed)
        original = fit(net, split.train, rec)
        for scenario, make in SPECS.items():
            task = UnlearningTask.build(split, make(seed))
            ref = unlearn(original.model, task, "retrain", seed=seed, recipe=rec)
            models, logs = {"original": original.model, "retrain": ref.model}, {"retrain": ref.log}
            chose = "-"
            try:
                auto = unlearn(
                    original.model, task, "auto", seed=seed, recipe=rec, budget=args.budget,
                    retrain_seconds=ref.log.seconds,
                )  # fmt: skip
                models["auto"], logs["auto"] = auto.model, auto.log
                chose = auto.log.details["chosen"]["method"]
            except AutoError as exc:
                print(f"seed {seed} {scenario}: {exc}", flush=True)
            report = evaluate(task, models, logs=logs, metrics=list(COLUMNS), seed=seed)
            for name in ("original", "auto"):
                if name not in report.models:
                    continue
                res = report.models[name]
                row = {
                    "seed": seed,
                    "scenario": scenario,
                    "model": name,
                    "avg_gap": res.avg_gap,
                    **{k: res.metrics[k] for k in COLUMNS},
                    **{f"retrain_{k}": report.models["retrain"].metrics[k] for k in COLUMNS},
                    "verdict": report.verdicts[name]["status"],
                    "speedup": res.speedup,
                    "chose": chose if name == "auto" else "",
                }
                rows.append(row)
                print(json.dumps(row), flush=True)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))
    print(f"\n{args.data}: mean over seeds (auto budget {args.budget} x retraining)")
    print("| scenario | model | Avg Gap | forget | retain | test | verdicts passed | speed-up | chose |")
    print("|---|---|---|---|---|---|---|---|---|")
    for scenario in SPECS:
        for name in ("original", "auto"):
            sub = [r for r in rows if r["scenario"] == scenario and r["model"] == name]
            if not sub:
                print(f"| {scenario} | {name} | nothing passed | | | | | | |")
                continue

            def mean(key, sub=sub):
                vals = [r[key] for r in sub if r[key] is not None]
                return statistics.mean(vals) if vals else float("nan")

            passed = sum(r["verdict"] == "pass" for r in sub)
            speed = f"{mean('speedup'):.1f}x" if name == "auto" else "-"
            print(
                f"| {scenario} | {name} ({len(sub)} seeds) | {mean('avg_gap'):.2f} | {mean('forget_acc'):.1f} | "
                f"{mean('retain_acc'):.1f} | {mean('test_acc'):.1f} | {passed}/{len(sub)} | {speed} | "
                f"{', '.join(r['chose'] for r in sub)} |"
            )


if __name__ == "__main__":
    main()
