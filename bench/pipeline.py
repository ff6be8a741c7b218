"""Deletion-pipeline throughput and SISA cost on MNIST-5k with the small CNN.

1. Requests per minute processed end to end (claim, unlearn, evaluate, gate, write the
   version, promote, audit, ledger) with batching off (one run per request) and on (one
   run for all waiting requests).
2. SISA: accuracy of the k x r ensemble against a single model trained on the same rows
   with the same recipe, and the wall time of one forget request against retraining the
   single model from scratch, all measured in this run.

Run: PYTHONPATH=src python bench/pipeline.py [--requests 6] [--epochs 10] [--shards 5 --slices 4]
"""

from __future__ import annotations

import argparse
import random
import statistics
import tempfile
import time
from pathlib import Path

import torch

from obliviate import ForgetSpec, TrainConfig, UnlearningTask, build_model, fit, load_data, unlearn
from obliviate.data import DataSplit
from obliviate.methods.sisa import train_sisa
from obliviate.pipeline import DataSource, Pipeline, PipelineConfig, process
from obliviate.training import accuracy


def throughput(home: Path, model, recipe: TrainConfig, n: int, batch_size: int, rows: int, seed: int) -> dict:
    cfg = PipelineConfig(
        dataset=DataSource(name="mnist5k", source="mnist5k"),
        architecture="cnn",
        recipe=recipe,
        method="finetune",
        method_config={"epochs": 1},
        gates=["forget_acc <= 100"],  # measuring throughput, not quality: every batch is promoted
        batch_size=batch_size,
        seed=seed,
    )
    pipe = Pipeline.create(home, cfg, model)
    rng = random.Random(seed)
    for i in range(n):
        pipe.submit("mnist5k", {"indices": rng.sample(range(len(pipe.split.train)), rows)}, f"user{i}")
    start = time.perf_counter()
    outcomes = process(pipe)
    seconds = time.perf_counter() - start
    assert pipe.ledger.counts()["done"] == n
    return {"batches": len(outcomes), "seconds": seconds, "per_minute": n / seconds * 60}


def sisa_costs(split: DataSplit, recipe: TrainConfig, shards: int, slices: int, requests: int, seed: int) -> dict:
    torch.manual_seed(seed)
    template = build_model("cnn", split.train.input_shape, 10)
    start = time.perf_counter()
    ensemble, _ = train_sisa(template, split.train, shards, slices, recipe, seed=seed)
    sisa_train = time.perf_counter() - start
    torch.manual_seed(seed)
    start = time.perf_counter()
    single = fit(build_model("cnn", split.train.input_shape, 10), split.train, recipe).model
    single_train = time.perf_counter() - start
    rng = random.Random(seed)
    current, model, forget_seconds = split, ensemble, []
    for _ in range(requests):
        task = UnlearningTask.build(current, ForgetSpec(indices=[rng.randrange(len(current.train))]))
        result = unlearn(model, task, "sisa", seed=seed)
        forget_seconds.append(result.log.seconds)
        model, current = result.model, DataSplit(task.retain, split.test)
    retrain = unlearn(single, task, "retrain", seed=seed, recipe=recipe.model_dump())
    return {
        "sisa_train": sisa_train,
        "single_train": single_train,
        "sisa_acc": accuracy(ensemble, split.test),
        "single_acc": accuracy(single, split.test),
        "sisa_after_acc": accuracy(model, split.test),
        "forget_mean": statistics.mean(forget_seconds),
        "forget_all": forget_seconds,
        "retrain": retrain.log.seconds,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=6)
    parser.add_argument("--rows", type=int, default=5, help="training rows named by each request")
    parser.add_argument("--epochs", type=int, default=10, help="fewer leave the 4-slice SISA shards undertrained")
    parser.add_argument("--shards", type=int, default=5)
    parser.add_argument("--slices", type=int, default=4)
    parser.add_argument("--sisa-requests", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    recipe = TrainConfig(optimizer="adam", lr=1e-3, epochs=args.epochs, batch_size=64, seed=args.seed)
    split = load_data("mnist5k", seed=args.seed)
    print(f"MNIST-5k: {len(split.train)} train / {len(split.test)} test rows, SmallCNN, recipe {args.epochs} epochs, "
          f"{args.threads} CPU threads")  # fmt: skip
    torch.manual_seed(args.seed)
    start = time.perf_counter()
    original = fit(build_model("cnn", split.train.input_shape, 10), split.train, recipe).model
    print(
        f"original trained in {time.perf_counter() - start:.1f}s, test accuracy {accuracy(original, split.test):.1f}%"
    )

    print(f"\n1. End-to-end throughput: {args.requests} requests of {args.rows} rows each, method finetune (1 epoch)")
    with tempfile.TemporaryDirectory() as tmp:
        rows = {}
        for label, bs in (("batching off", 1), ("batching on", args.requests)):
            rows[label] = throughput(Path(tmp) / label.replace(" ", "_"), original, recipe, args.requests, bs,
                                     args.rows, args.seed)  # fmt: skip
            r = rows[label]
            print(f"   {label:13s} batch size {bs:3d}: {r['batches']:2d} runs, {r['seconds']:7.1f}s, "
                  f"{r['per_minute']:6.2f} requests/min")  # fmt: skip
        gain = rows["batching on"]["per_minute"] / rows["batching off"]["per_minute"]
        print(f"   batching speed-up: {gain:.1f}x")

    print(f"\n2. SISA, {args.shards} shards x {args.slices} slices, {args.sisa_requests} single-row forget requests")
    s = sisa_costs(split, recipe, args.shards, args.slices, args.sisa_requests, args.seed)
    print(f"   training: SISA {s['sisa_train']:.1f}s vs single model {s['single_train']:.1f}s")
    cost = s["single_acc"] - s["sisa_acc"]
    print(f"   test accuracy: SISA {s['sisa_acc']:.2f}% vs single {s['single_acc']:.2f}% (cost {cost:+.2f} points); "
          f"SISA after the requests {s['sisa_after_acc']:.2f}%")  # fmt: skip
    each = ", ".join(f"{x:.1f}" for x in s["forget_all"])
    print(f"   per forget request: SISA {s['forget_mean']:.1f}s (each: {each}) vs full retraining {s['retrain']:.1f}s "
          f"-> {s['retrain'] / s['forget_mean']:.1f}x faster")  # fmt: skip


if __name__ == "__main__":
    main()
