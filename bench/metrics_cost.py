"""What evaluation costs, in units of one retrain, on MNIST-5k (random 2% forgetting, MLP).

Times the forward passes, every default metric one by one, LiRA with K shadow models, and
the models that forgetting quality F needs, each divided by the wall time of one retrain
measured in the same run.

    PYTHONPATH=src python bench/metrics_cost.py [--epochs 10] [--shadows 8]
"""

from __future__ import annotations

import argparse
import time

import torch

from obliviate import ForgetSpec, TrainConfig, UnlearningTask, build_model, fit, load_data, unlearn
from obliviate.evaluation import evaluate, model_outputs
from obliviate.metrics import METRICS, MetricContext
from obliviate.metrics.forgetting_quality import quality_from_scores, score_model
from obliviate.training import seed_everything


def timed(fn):
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--shadows", type=int, default=8)
    args = parser.parse_args()
    torch.set_num_threads(1)
    task = UnlearningTask.build(load_data("mnist5k", seed=0), ForgetSpec(fraction=0.02, seed=0))
    recipe = TrainConfig(optimizer="adam", lr=1e-3, epochs=args.epochs, batch_size=64)
    seed_everything(0)
    original = fit(build_model("mlp", task.input_shape, task.num_outputs), task.train, recipe).model
    retrain = unlearn(original, task, "retrain", recipe=recipe)
    unit = retrain.log.seconds
    finetune = unlearn(original, task, "finetune").model
    print(f"MNIST-5k, {len(task.train)} train / {len(task.test)} test rows, forget {len(task.forget)} (random 2%)")
    print(f"one retrain (MLP, {args.epochs} epochs, 1 thread): {unit:.2f}s = 1.000 retrain\n")
    print(f"{'what':34s} {'seconds':>8s} {'retrains':>9s}")

    def row(name, seconds):
        print(f"{name:34s} {seconds:8.3f} {seconds / unit:9.3f}")

    outputs, sec = timed(
        lambda: {
            n: model_outputs(m, task)
            for n, m in {"original": original, "retrain": retrain.model, "finetune": finetune}.items()
        }
    )
    row("forward passes, 3 models", sec)
    ctx = MetricContext(
        task,
        "finetune",
        finetune,
        outputs["finetune"],
        outputs["original"],
        outputs["retrain"],
        original,
        retrain.model,
    )
    total = 0.0
    for name, info in METRICS.items():
        if info.default and task.kind in info.kinds:
            _, sec = timed(lambda info=info: info.fn(ctx))
            total += sec
            row(f"  {name}", sec)
    row("default metric suite, per model", total)
    _, sec = timed(lambda: evaluate(task, {"original": original, "retrain": retrain.model, "finetune": finetune}))
    row("evaluate(), 3 models, defaults", sec)
    opts = {"lira": {"shadow_models": args.shadows, "recipe": recipe.model_dump()}}
    _, sec = timed(
        lambda: evaluate(task, {"finetune": finetune}, reference=None, original=None, metrics=["lira"], options=opts)
    )
    row(f"lira, {args.shadows} shadow models (first model)", sec)
    _, sec = timed(
        lambda: evaluate(task, {"finetune": finetune}, reference=None, original=None, metrics=["lira"], options=opts)
    )
    row("lira, next model (shadows cached)", sec)
    one, sec = timed(lambda: score_model(finetune, task))
    _, sec2 = timed(lambda: quality_from_scores([one] * 32, [one] * 32))
    row("F: scoring 64 models + the estimate", 64 * sec + sec2)
    print("F also needs its models: 32 retrains + 32 unlearning runs = 32 + 32 x (method time / retrain time)")


if __name__ == "__main__":
    main()
