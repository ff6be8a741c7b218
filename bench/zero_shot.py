"""Zero-shot unlearning benchmark: MNIST-5k, AllCNN, forget one class; EMMN, GKT, model inversion vs retrain.

Reports forget-test and retain-test accuracy, AIN (with its spread over seeds), relearn steps,
mia_entropy and wall time per method; the retained accuracy of model inversion against the
number of synthesised samples per class; and the curve of real forget/retain accuracy over a
GKT run with the checkpoint its data-free rule chose (table + PNG). The real accuracies of the
curve are measured from outside the method, which never sees a row.

The original and the retrained reference are trained once (seed 0); the unlearning methods run
with ``--seeds`` different seeds, so the spread is that of the zero-shot methods themselves.

    PYTHONPATH=src python bench/zero_shot.py --out bench/results/zero_shot
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import time
from pathlib import Path

import torch

from obliviate.data import load_data
from obliviate.evaluation import evaluate
from obliviate.forget import ForgetSpec, UnlearningTask
from obliviate.methods import RunContext, UnlearningResult, make_config, unlearn
from obliviate.methods.gkt import gated_knowledge_transfer
from obliviate.methods.model_inversion import distil_retained, synthesise
from obliviate.models import build_model
from obliviate.records import RunLog
from obliviate.synthesis import class_labels
from obliviate.training import TrainConfig, accuracy, fit, seed_everything

METRICS = ["forget_test_acc", "retain_test_acc", "test_acc", "mia_entropy", "anamnesis_index", "relearn_steps"]
COLUMNS = [
    ("forget-test %", "forget_test_acc"),
    ("retain-test %", "retain_test_acc"),
    ("AIN", "anamnesis_index"),
    ("relearn steps", "relearn_steps"),
    ("mia_entropy %", "mia_entropy"),
    ("wall s", "seconds"),
]


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--forget-class", type=int, default=3)
    p.add_argument("--width", type=float, default=0.125, help="AllCNN width (0.125: 12/24 channels)")
    p.add_argument("--epochs", type=int, default=6)
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--gkt", type=json.loads, default={}, help="GKT config overrides (JSON)")
    p.add_argument("--emmn", type=json.loads, default={}, help="EMMN config overrides (JSON)")
    p.add_argument("--inversion", type=json.loads, default={}, help="model-inversion config overrides (JSON)")
    p.add_argument("--sweep", type=int, nargs="*", default=[10, 30, 100, 200], help="samples per class to sweep")
    p.add_argument("--out", type=Path, default=Path("bench/results/zero_shot"))
    p.add_argument("--curve-only", action="store_true", help="only one GKT run (seed 0) with its curve")
    return p.parse_args()


def gkt_with_curve(original, task, config: dict, seed: int):
    """GKT with real test accuracies recorded at every checkpoint check (time for them excluded)."""
    cfg = make_config("gkt", **config)
    ctx = RunContext(device=torch.device("cpu"), seed=seed, generator=seed_everything(seed))
    spent = 0.0

    def on_check(iteration, student):
        nonlocal spent
        start = time.perf_counter()
        record = {
            "forget_test": accuracy(student, task.forget_test),
            "retain_test": accuracy(student, task.retain_test),
        }
        spent += time.perf_counter() - start
        return record

    start = time.perf_counter()
    result = gated_knowledge_transfer(original, task.view(frozenset()), cfg, ctx, on_check)
    seconds = time.perf_counter() - start - spent
    log = RunLog("gkt", cfg.model_dump(mode="json"), seconds, ctx.steps, seed, [])
    return result, log


def inversion_sweep(original, task, config: dict, sizes: list[int], seed: int) -> list[dict]:
    """Retained accuracy of model inversion vs samples per class: one synthesis at the largest
    size, students distilled on the first k rows of each class."""
    cfg = make_config("model_inversion", **config)
    ctx = RunContext(device=torch.device("cpu"), seed=seed, generator=seed_everything(seed))
    forget = task.forget_classes
    retained = [c for c in range(task.num_classes) if c not in forget]
    largest = max(sizes)
    labels = class_labels(retained, largest)
    start = time.perf_counter()
    X = synthesise(original, labels, task.input_shape, cfg, ctx.generator)
    per_row = (time.perf_counter() - start) / len(X)
    rows = []
    for k in sorted(sizes):
        pick = torch.cat([torch.nonzero(labels == c).flatten()[:k] for c in retained])
        start = time.perf_counter()
        student = distil_retained(original, X[pick], forget, cfg, ctx)
        seconds = time.perf_counter() - start + per_row * len(pick)
        rows.append(
            {
                "per_class": k,
                "retain_test": accuracy(student, task.retain_test),
                "forget_test": accuracy(student, task.forget_test),
                "seconds": seconds,
            }
        )
        print(f"  inversion sweep {k}/class: {rows[-1]}", flush=True)
    return rows


def train_pair(args, split, task, recipe):
    """The original and the retrained reference, cached in ``--out`` so reruns skip training."""
    model = build_model("allcnn", split.train.input_shape, split.train.num_outputs, width=args.width)
    path = args.out / f"models_w{args.width}_e{args.epochs}_c{args.forget_class}.pt"
    if path.exists():
        saved = torch.load(path)
        original, reference = model, copy.deepcopy(model)
        original.load_state_dict(saved["original"])
        reference.load_state_dict(saved["retrain"])
        log = RunLog("retrain", {}, saved["retrain_seconds"], saved["retrain_steps"], 0, ["retain"])
        print(f"loaded original and retrain from {path}", flush=True)
        return original.eval(), UnlearningResult(reference.eval(), log)
    trained = fit(model, split.train, recipe)
    original = trained.model.eval()
    retrain = unlearn(original, task, "retrain", recipe=recipe, seed=0)
    print(f"original trained in {trained.seconds:.1f}s; retrain {retrain.log.seconds:.1f}s", flush=True)
    torch.save(
        {
            "original": original.state_dict(),
            "retrain": retrain.model.state_dict(),
            "retrain_seconds": retrain.log.seconds,
            "retrain_steps": retrain.log.steps,
        },
        path,
    )
    return original, retrain


def fmt(values: list[float], digits: int = 2) -> str:
    if len(values) == 1:
        return f"{values[0]:.{digits}f}"
    return f"{statistics.mean(values):.{digits}f} ± {statistics.stdev(values):.{digits}f}"


def main() -> None:
    args = parse_args()
    torch.set_num_threads(1)
    args.out.mkdir(parents=True, exist_ok=True)
    split = load_data("mnist5k", seed=0)
    task = UnlearningTask.build(split, ForgetSpec(classes=[args.forget_class]))
    recipe = TrainConfig(optimizer="adam", lr=2e-3, epochs=args.epochs, batch_size=64, seed=0)
    original, retrain = train_pair(args, split, task, recipe)

    results: dict[str, list[dict]] = {}
    curve = None
    for seed in range(1 if args.curve_only else args.seeds):
        models = {"original": original, "retrain": retrain.model}
        logs = {"retrain": retrain.log}
        for name, overrides in () if args.curve_only else (("emmn", args.emmn), ("model_inversion", args.inversion)):
            try:
                res = unlearn(original, task, name, seed=seed, **overrides)
            except FloatingPointError as exc:  # reported as a failed run, not hidden
                print(f"seed {seed} {name}: FAILED ({exc})", flush=True)
                continue
            models[name], logs[name] = res.model, res.log
            print(f"seed {seed} {name}: {res.log.seconds:.1f}s", flush=True)
        gkt, logs["gkt"] = gkt_with_curve(original, task, args.gkt, seed)
        models["gkt"] = gkt.student
        if seed == 0:
            curve = gkt
        print(f"seed {seed} gkt: {logs['gkt'].seconds:.1f}s, best iteration {gkt.best_iteration}", flush=True)
        report = evaluate(task, models, metrics=METRICS, logs=logs, seed=seed)
        for name, res in report.models.items():
            results.setdefault(name, []).append({**res.metrics, "seconds": res.seconds})
        print(json.dumps({k: v[-1] for k, v in results.items()}, default=float), flush=True)
        write_outputs(args, results, curve, [], quiet=True)  # partial results survive an interrupted run

    sweep = (
        inversion_sweep(original, task, args.inversion, args.sweep, seed=0)
        if args.sweep and not args.curve_only
        else []
    )
    write_outputs(args, results, curve, sweep)


def write_outputs(args, results: dict[str, list[dict]], curve, sweep: list[dict], quiet: bool = False) -> None:
    lines = [
        f"MNIST-5k (4000 train / 1000 test), AllCNN width {args.width}, forget class {args.forget_class}, "
        f"{len(next(iter(results.values())))} unlearning seeds (mean ± std); "
        "AIN/relearn: Adam 1e-3, batch 32, <= 300 steps",
        "",
        "| method | " + " | ".join(c for c, _ in COLUMNS) + " |",
        "|---" * (len(COLUMNS) + 1) + "|",
    ]
    for name, runs in results.items():
        cells = []
        for _, key in COLUMNS:
            vals = [r[key] for r in runs if r.get(key) is not None]
            cells.append(fmt(vals) if vals else "-")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    ain = {name: ", ".join(f"{r['anamnesis_index']:.2f}" for r in runs) for name, runs in results.items()}
    lines += ["", "AIN per seed: " + "; ".join(f"{name}: {values}" for name, values in ain.items())]
    if sweep:
        lines += [
            "",
            "Model inversion: retained accuracy vs synthesised samples per class (seed 0)",
            "",
            "| per class | retain-test % | forget-test % | wall s |",
            "|---|---|---|---|",
        ]
        lines += [
            f"| {r['per_class']} | {r['retain_test']:.2f} | {r['forget_test']:.2f} | {r['seconds']:.1f} |"
            for r in sweep
        ]
    if curve is not None:
        lines += [
            "",
            f"GKT curve (seed 0): real test accuracy at each check; * = checkpoint kept by the data-free "
            f"rule (iteration {curve.best_iteration})",
            "",
            "| iteration | forget-test % | retain-test % | probe agreement | probe forget prob | score |",
            "|---|---|---|---|---|---|",
        ]
        for h in curve.history:
            mark = " *" if h["iteration"] == curve.best_iteration else ""
            lines.append(
                f"| {h['iteration']}{mark} | {h['forget_test']:.2f} | {h['retain_test']:.2f} | {h['agreement']:.3f} "
                f"| {h['forget_prob']:.3f} | {h['score']:.3f} |"
            )
        plot_curve(curve, args.out / "gkt_curve.png")
    text = "\n".join(lines)
    if not quiet:
        print(text, flush=True)
    (args.out / "zero_shot.md").write_text(text + "\n")
    payload = {
        "results": results,
        "sweep": sweep,
        "curve": curve.history if curve else None,
        "best_iteration": curve.best_iteration if curve else None,
        "args": {**vars(args), "out": str(args.out)},
    }
    (args.out / "zero_shot.json").write_text(json.dumps(payload, indent=2, default=float))


def plot_curve(curve, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    it = [h["iteration"] for h in curve.history]
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.plot(it, [h["retain_test"] for h in curve.history], "o-", label="retain-test accuracy (real)")
    ax.plot(it, [h["forget_test"] for h in curve.history], "s-", label="forget-test accuracy (real)")
    ax.plot(it, [100 * h["forget_prob"] for h in curve.history], ":", label="probe forget prob x100 (data-free)")
    ax.axvline(curve.best_iteration, color="k", linestyle="--", label=f"kept checkpoint ({curve.best_iteration})")
    ax.set_xlabel("GKT iteration")
    ax.set_ylabel("percent")
    ax.set_title("GKT on MNIST-5k / AllCNN: accuracy over training")
    ax.legend(loc="center right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    main()
