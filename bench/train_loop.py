"""Framework training loop vs a plain hand-written PyTorch loop: same model, data, epochs, seed.

Prints the ratio of ``obliviate.fit`` time to the plain loop's (target: <= 1.10), and, for
information, the time of the common DataLoader-over-TensorDataset loop.

    python bench/train_loop.py [--data mnist5k] [--model cnn] [--epochs 3] [--repeats 3]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset

from obliviate import TrainConfig, build_model, fit, load_data


def plain_loop(model, X, y, epochs: int, batch_size: int, lr: float, seed: int) -> None:
    """The loop a careful user writes by hand: tensors in memory, shuffled index slices."""
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    model.train()
    for _ in range(epochs):
        for idx in torch.randperm(len(X), generator=gen).split(batch_size):
            loss = F.cross_entropy(model(X[idx]), y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()


def dataloader_loop(model, X, y, epochs: int, batch_size: int, lr: float, seed: int) -> None:
    torch.manual_seed(seed)
    loader = DataLoader(TensorDataset(X, y), batch_size=batch_size, shuffle=True)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    model.train()
    for _ in range(epochs):
        for xb, yb in loader:
            loss = F.cross_entropy(model(xb), yb)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="mnist5k")
    parser.add_argument("--model", default="cnn")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    train = load_data(args.data).train
    cfg = TrainConfig(epochs=args.epochs, batch_size=args.batch_size, lr=1e-3, seed=0)

    def timed(run) -> float:
        model = build_model(args.model, train.input_shape, train.num_outputs, seed=0)
        start = time.perf_counter()
        run(model)
        return time.perf_counter() - start

    runs = {
        "obliviate.fit": lambda m: fit(m, train, cfg),
        "plain loop": lambda m: plain_loop(m, train.X, train.y, cfg.epochs, cfg.batch_size, cfg.lr, 0),
        "DataLoader loop": lambda m: dataloader_loop(m, train.X, train.y, cfg.epochs, cfg.batch_size, cfg.lr, 0),
    }
    times: dict[str, list[float]] = {name: [] for name in runs}
    for run in runs.values():  # warm-up: first-call allocations, thread pools and lazy imports, for every variant
        timed(run)
    for _ in range(args.repeats):  # interleaved so background load hits every variant alike
        for name, run in runs.items():
            times[name].append(timed(run))
    med = {name: statistics.median(t) for name, t in times.items()}
    print(
        f"{args.data}, {args.model}, {len(train)} rows, {args.epochs} epochs, batch {args.batch_size}, "
        f"median of {args.repeats} interleaved runs, {torch.get_num_threads()} threads"
    )
    for name, t in med.items():
        print(f"  {name:16s} {t:7.3f} s   ratio to plain loop {t / med['plain loop']:.3f}")
    ratio = med["obliviate.fit"] / med["plain loop"]
    print(f"fit / plain loop = {ratio:.3f} (target <= 1.10: {'met' if ratio <= 1.10 else 'MISSED'})")


if __name__ == "__main__":
    main()
