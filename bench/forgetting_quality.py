"""Forgetting quality F (NeurIPS 2023 challenge) on MNIST-5k, random 2% forgetting, N models per side.

Rows: a second set of retrained models (the best score this estimator gives at this N),
fine-tuning variants, gradient ascent, any strong method registered (scrub, bad_teacher, ...),
and two that never unlearned: the original itself N times (what a method that does nothing
returns) and N originals trained with other seeds. Every model is one job on the chosen executor.

    PYTHONPATH=src python bench/forgetting_quality.py [--n 32] [--epochs 8] [--executor ray]
"""

from __future__ import annotations

import argparse
import functools
import time

import numpy as np
import torch

from obliviate import ForgetSpec, TrainConfig, UnlearningTask, build_model, fit, load_data, unlearn
from obliviate.methods import REGISTRY
from obliviate.metrics.forgetting_quality import quality_from_scores, score_model
from obliviate.metrics.klom import klom
from obliviate.metrics.lira import ulira
from obliviate.runner.executor import make_executor
from obliviate.training import seed_everything

SPEC = ForgetSpec(fraction=0.02, seed=0)
STRONG = ("scrub", "bad_teacher", "salun", "l1_sparse")


@functools.cache
def task() -> UnlearningTask:
    return UnlearningTask.build(load_data("mnist5k", seed=0), SPEC)


def recipe(epochs: int, seed: int) -> TrainConfig:
    return TrainConfig(optimizer="adam", lr=1e-3, epochs=epochs, batch_size=64, seed=seed)


def train(rows: str, seed: int, epochs: int):
    t = task()
    data = t.retain if rows == "retain" else t.train
    seed_everything(seed)  # seeds the initial weights too, so a job gives the same model on any executor
    return fit(build_model("mlp", t.input_shape, t.num_outputs), data, recipe(epochs, seed)).model


def job(item: tuple):
    """One model of one ensemble -> its scores (small arrays) and seconds."""
    kind, seed, epochs, payload = item
    start = time.perf_counter()
    if kind == "retrain":
        model = train("retain", seed, epochs)
    elif kind == "original":
        model = train("train", seed, epochs)
    elif kind == "unchanged":
        model = payload
    else:
        original, config = payload
        model = unlearn(original, task(), kind.split(":")[0], seed=seed, **config).model
    return score_model(model, task()), time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=32)
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--executor", default="serial")
    parser.add_argument("--ray-address", default=None)
    args = parser.parse_args()
    torch.set_num_threads(1)
    t = task()
    start = time.perf_counter()
    original = train("train", 0, args.epochs)
    orig_scores = score_model(original, t)
    methods = {
        "finetune": {},
        "finetune:lr0.05x8": {"lr": 0.05, "epochs": 8},
        "gradient_ascent": {"stop_accuracy": round(orig_scores.test_acc, 1), "lr": 1e-3},
    }
    methods.update({name: {} for name in STRONG if name in REGISTRY})
    n, e = args.n, args.epochs
    groups = {
        "retrain (reference)": [("retrain", s, e, None) for s in range(1, n + 1)],
        "retrain (second set)": [("retrain", s, e, None) for s in range(1001, 1001 + n)],
        "original, unchanged": [("unchanged", s, e, original) for s in range(1, n + 1)],
        "originals, N seeds": [("original", s, e, None) for s in range(1, n + 1)],
        **{name: [(name, s, e, (original, cfg)) for s in range(1, n + 1)] for name, cfg in methods.items()},
    }
    items = [item for group in groups.values() for item in group]
    executor = make_executor(args.executor, args.ray_address)
    results = iter(executor.map(job, items))
    scored = {name: [next(results) for _ in group] for name, group in groups.items()}
    reference = [s for s, _ in scored.pop("retrain (reference)")]
    print(
        f"MNIST-5k, random {SPEC.fraction:.0%} forgetting ({len(t.forget)} rows), MLP, {e} epochs; "
        f"original test acc {orig_scores.test_acc:.2f}%"
    )
    print(
        f"N = {n} models per side, epsilon ceiling ln(N-1) = {np.log(n - 1):.3f}, delta = 1e-5, "
        f"executor {args.executor}"
    )
    header = f"{'models':28s} {'F':>6s} {'final':>6s} {'RA_u/RA_s':>9s} {'TA_u/TA_s':>9s} {'med eps':>7s} "
    print(header + f"{'KLoM p95':>8s} {'U-LiRA AUC':>10s} {'s/model':>7s}")
    for name, pairs in scored.items():
        scores = [s for s, _ in pairs]
        q = quality_from_scores(scores, reference)
        k = klom(np.stack([s.margin for s in scores]), np.stack([s.margin for s in reference]))
        u = ulira(np.stack([s.confidence for s in scores]), np.stack([s.confidence for s in reference]))
        secs = np.mean([sec for _, sec in pairs])
        print(
            f"{name:28s} {q.f:6.3f} {q.final_score:6.3f} {q.retain_acc_ratio:9.3f} {q.test_acc_ratio:9.3f} "
            f"{q.median_epsilon:7.3f} {k:8.3f} {u['auc']:10.3f} {secs:7.2f}"
        )
    print(f"total wall time {time.perf_counter() - start:.0f}s")


if __name__ == "__main__":
    main()
