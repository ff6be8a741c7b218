"""Calibrate the reference-free verdict against retraining (issue 14).

For each data set, scenario (class 3, random 10%) and seed: train the original, retrain the
reference once, then run a grid of methods and settings chosen to spread from "forgot nothing"
to "collapsed". Every run records the verifier's score and verdict (no reference used) and the
true Avg Gap to the retrained model. The summary reports the Spearman rank correlation of
score vs Avg Gap and how often the verdict agrees with "Avg Gap <= 3", and draws the scatter.

    PYTHONPATH=src OMP_NUM_THREADS=1 python bench/calibration.py --out bench/results/calibration
    PYTHONPATH=src python bench/calibration.py --out bench/results/calibration --analyse-only
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import torch

from obliviate import ForgetSpec, TrainConfig, UnlearningTask, build_model, evaluate, fit, load_data, unlearn
from obliviate.methods import get_method
from obliviate.verification import verify

RECIPES = {
    "digits": TrainConfig(optimizer="adam", lr=2e-3, epochs=12, batch_size=64),
    "mnist5k": TrainConfig(optimizer="adam", lr=3e-3, epochs=10, batch_size=64),
}
GRID: list[tuple[str, str, dict]] = [
    ("original", "none", {}),
    ("finetune_1ep", "finetune", {"epochs": 1}),
    ("finetune_3ep", "finetune", {"epochs": 3}),
    ("finetune_lowlr", "finetune", {"epochs": 2, "lr": 0.002}),
    ("gradient_ascent", "gradient_ascent", {}),
    ("gradient_ascent_partial", "gradient_ascent", {"stop_accuracy": 40.0}),
    ("neggrad_plus", "neggrad_plus", {}),
    ("random_labels", "random_labels", {}),
    ("amnesiac", "amnesiac", {}),
    ("scrub", "scrub", {}),
    ("bad_teacher", "bad_teacher", {}),
    ("ssd", "ssd", {}),
    ("ssd_alpha10", "ssd", {"alpha": 10.0}),
    ("salun", "salun", {}),
    ("l1_sparse_2ep", "l1_sparse", {"epochs": 2}),
    ("unsir", "unsir", {}),
    ("boundary_shrink", "boundary_shrink", {}),
]
SPECS = {"class": lambda seed: ForgetSpec(classes=[3]), "random": lambda seed: ForgetSpec(fraction=0.1, seed=seed)}
GAP_METRICS = ["forget_acc", "retain_acc", "test_acc", "mia_entropy"]
PASS_GAP = 3.0


def run(out: Path, datasets: list[str], seeds: list[int]) -> None:
    """Append one JSON line per run to ``out/runs.jsonl``; runs already there are skipped."""
    path = out / "runs.jsonl"
    done = set()
    if path.exists():
        done = {(r["data"], r["scenario"], r["seed"], r["label"]) for r in map(json.loads, path.open())}
    for data in datasets:
        recipe = RECIPES[data]
        for seed in seeds:
            split = load_data(data, seed=seed)
            rec = recipe.model_copy(update={"seed": seed})
            start = time.perf_counter()
            original = fit(build_model("cnn", split.train.input_shape, 10, seed=seed), split.train, rec).model
            print(f"{data} seed {seed}: original in {time.perf_counter() - start:.1f}s", flush=True)
            for scenario, make_spec in SPECS.items():
                task = UnlearningTask.build(split, make_spec(seed))
                todo = [g for g in GRID if (data, scenario, seed, g[0]) not in done]
                if not todo:
                    continue
                ref = unlearn(original, task, "retrain", seed=seed, recipe=rec)
                for label, method, config in todo:
                    if method != "none" and task.spec.scenario not in get_method(method).scenarios:
                        continue
                    if method == "none":
                        model, seconds = original, 0.0
                    else:
                        result = unlearn(original, task, method, seed=seed, **config)
                        model, seconds = result.model, result.log.seconds
                    report = evaluate(
                        task, {"retrain": ref.model, label: model}, reference="retrain", metrics=GAP_METRICS, seed=seed
                    )
                    verdict = verify(model, task, original=original, seed=seed)
                    row = {
                        "data": data,
                        "scenario": scenario,
                        "seed": seed,
                        "label": label,
                        "method": method,
                        "config": config,
                        "avg_gap": report.models[label].avg_gap,
                        "gaps": report.models[label].gaps,
                        "metrics": report.models[label].metrics,
                        "score": verdict.score,
                        "status": verdict.status,
                        "verdict": verdict.to_dict(),
                        "seconds": seconds,
                        "retrain_seconds": ref.log.seconds,
                    }
                    with path.open("a") as fh:
                        fh.write(json.dumps(row) + "\n")
                    print(
                        f"  {scenario:6} {label:24} gap {row['avg_gap']:6.2f}  score {verdict.score:7.2f}  "
                        f"{verdict.status}",
                        flush=True,
                    )


def analyse(out: Path) -> dict:
    """Spearman of score vs Avg Gap, verdict agreement with Avg Gap <= 3, the scatter plot."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from scipy.stats import spearmanr

    rows = [json.loads(line) for line in (out / "runs.jsonl").open()]
    rows = [r for r in rows if r["avg_gap"] is not None and not math.isnan(r["score"])]

    def summary(subset: list[dict]) -> dict:
        rho = spearmanr([r["score"] for r in subset], [r["avg_gap"] for r in subset]).statistic
        agree = sum((r["status"] == "pass") == (r["avg_gap"] <= PASS_GAP) for r in subset)
        false_pass = sum(r["status"] == "pass" and r["avg_gap"] > PASS_GAP for r in subset)
        false_fail = sum(r["status"] != "pass" and r["avg_gap"] <= PASS_GAP for r in subset)
        return {
            "runs": len(subset),
            "spearman": round(float(rho), 3),
            "agreement": round(agree / len(subset) * 100, 1),
            "passed_but_gap_over_3": false_pass,
            "failed_but_gap_within_3": false_fail,
        }

    result = {"all": summary(rows)}
    for data in sorted({r["data"] for r in rows}):
        for scenario in sorted({r["scenario"] for r in rows}):
            subset = [r for r in rows if r["data"] == data and r["scenario"] == scenario]
            if len(subset) > 2:
                result[f"{data}/{scenario}"] = summary(subset)
    (out / "summary.json").write_text(json.dumps(result, indent=2))
    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    markers = {"class": "o", "random": "^"}
    colors = {"digits": "tab:blue", "mnist5k": "tab:orange"}
    for r in rows:
        ax.scatter(
            max(r["score"], 1e-2),
            r["avg_gap"],
            marker=markers[r["scenario"]],
            color=colors.get(r["data"], "gray"),
            alpha=0.7,
            edgecolors="black" if r["status"] == "pass" else "none",
        )
    ax.set_xscale("log")
    ax.axvline(1.0, color="gray", ls="--", lw=0.8)
    ax.axhline(PASS_GAP, color="gray", ls=":", lw=0.8)
    ax.set_xlabel("verifier score (worst check / its threshold; <= 1 passes)")
    ax.set_ylabel("Avg Gap to retraining (points)")
    s = result["all"]
    ax.set_title(f"{s['runs']} runs · Spearman {s['spearman']} · agreement {s['agreement']}%")
    for name, color in colors.items():
        ax.scatter([], [], color=color, label=name)
    for name, marker in markers.items():
        ax.scatter([], [], color="gray", marker=marker, label=f"{name} forgetting")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "calibration.png", dpi=110)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("bench/results/calibration"))
    parser.add_argument("--data", default="digits,mnist5k")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--analyse-only", action="store_true")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(1)
    if not args.analyse_only:
        run(args.out, args.data.split(","), [int(s) for s in args.seeds.split(",")])
    print(json.dumps(analyse(args.out), indent=2))


if __name__ == "__main__":
    main()
