"""One training function for originals, retrained references, proxies and shards.

``predict`` (per-example outputs, batch by batch) lives in ``obliviate.adapter`` and is
re-exported here."""

from __future__ import annotations

import copy
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Literal

import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field
from torch import Tensor, nn
from torch.utils.data import DataLoader
from torch.utils.data import Dataset as TorchDataset

from obliviate.adapter import forward, model_device, predict
from obliviate.data import Dataset
from obliviate.data.dataset import split_item
from obliviate.data.loader import count_rows
from obliviate.engine import Engine, OptimizerName, Precision, Schedule, make_optimizer, make_scheduler


class TrainConfig(BaseModel):
    """The training recipe. Retraining reuses the original's recipe on the retained rows."""

    model_config = ConfigDict(extra="forbid")

    optimizer: OptimizerName = "adam"
    lr: float = Field(1e-3, gt=0)
    momentum: float = Field(0.9, ge=0, lt=1)
    weight_decay: float = Field(0.0, ge=0)
    schedule: Schedule = "constant"
    epochs: int = Field(10, ge=1)
    batch_size: int = Field(64, ge=1)
    seed: int = 0
    loss: Literal["auto", "cross_entropy", "mse", "l1"] = "auto"
    val_fraction: float = Field(0.0, ge=0, lt=1)
    patience: int | None = Field(None, ge=1, description="early-stopping patience in epochs")


@dataclass
class FitResult:
    model: nn.Module
    steps: int
    seconds: float
    history: list[dict] = field(default_factory=list)
    best_epoch: int | None = None


def task_loss(kind: str, loss: str = "auto") -> callable:
    """Mean loss for the task kind: cross-entropy for classes, MSE for regression by default."""
    if loss == "auto":
        loss = "cross_entropy" if kind == "classification" else "mse"
    if loss == "cross_entropy":
        return F.cross_entropy
    if loss == "mse":
        return lambda out, y: F.mse_loss(out.squeeze(-1), y)
    if loss == "l1":
        return lambda out, y: F.l1_loss(out.squeeze(-1), y)
    raise ValueError(f"unknown loss {loss!r}")


def unit_loss(kind: str, y: Tensor, loss: str = "auto") -> callable:
    """``task_loss``, divided for regression by the variance of the targets ``y``.

    A regression loss in target units (years, ppm) is var(y) times larger than the same fit in
    standard units, so learning rates chosen for cross-entropy would diverge on it. Methods whose
    defaults were set on classification use this to stay unit-free.
    """
    base = task_loss(kind, loss)
    if kind == "classification" or len(y) < 2:
        return base
    scale = float(y.float().var()) or 1.0
    if loss == "l1":
        scale = scale**0.5
    return lambda out, target: base(out, target) / scale


def per_example_loss(outputs: Tensor, y: Tensor, kind: str) -> Tensor:
    """Unreduced loss per row: cross-entropy, or squared error for regression."""
    if kind == "classification":
        return F.cross_entropy(outputs, y, reduction="none")
    return (outputs.squeeze(-1) - y) ** 2


def batches(
    n: int, batch_size: int, generator: torch.Generator | None = None, shuffle: bool = True
) -> Iterator[Tensor]:
    """Index tensors covering ``range(n)``; the data stay in memory and are sliced per batch."""
    order = torch.randperm(n, generator=generator) if shuffle else torch.arange(n)
    yield from order.split(batch_size)


def accuracy(model: nn.Module, data: Dataset, device: str | torch.device | None = None) -> float:
    """Percent of rows classified correctly (NaN for an empty set)."""
    if len(data) == 0:
        return float("nan")
    return float((predict(model, data, device=device).argmax(1) == data.y).float().mean() * 100)


def seed_everything(seed: int) -> torch.Generator:
    """Seed torch's global generator and return a dedicated generator for shuffling."""
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


def _split_validation(data: Dataset, fraction: float, gen: torch.Generator) -> tuple[Dataset, Dataset | None]:
    if fraction <= 0 or not isinstance(data, Dataset):
        return data, None
    order = torch.randperm(len(data), generator=gen)
    n_val = max(1, int(len(data) * fraction))
    return data.subset(order[n_val:]), data.subset(order[:n_val])


def _as_training_data(data: object) -> Dataset | DataLoader:
    if isinstance(data, (Dataset, DataLoader)):
        return data
    if isinstance(data, TorchDataset):
        return Dataset.from_torch(data)
    raise TypeError(f"fit trains on a Dataset, a torch Dataset or a DataLoader, not {type(data).__name__}")


def _loader_kind(loader: DataLoader) -> str:
    """Task kind of a DataLoader's data, from the dtype of its first batch's targets."""
    _, y = split_item(next(iter(loader)))
    return "classification" if not torch.as_tensor(y).is_floating_point() else "regression"


def fit(
    model: nn.Module,
    data: Dataset | DataLoader | TorchDataset,
    config: TrainConfig | None = None,
    *,
    val: Dataset | None = None,
    device: str | torch.device | None = None,
    precision: Precision = "fp32",
    progress: bool = False,
) -> FitResult:
    """Train ``model`` in place on ``data`` with ``config`` and return it with its history.

    ``data`` is a ``Dataset``, a map-style torch data set, or a torch ``DataLoader`` (its own
    batches are used; ``batch_size`` and shuffling are then the loader's). Runs on ``device``
    (default: where the model is) through the shared ``Engine`` at ``precision``.
    Early stopping (``patience``) watches the validation loss on ``val`` or on a
    ``val_fraction`` held out of ``data``, and restores the best epoch's weights.
    Seeded runs repeat bit for bit on the CPU.
    """
    config = config or TrainConfig()
    gen = seed_everything(config.seed)
    data = _as_training_data(data)
    rows = count_rows(data)
    if rows == 0:
        raise ValueError("cannot train on an empty data set")
    if val is None:
        data, val = _split_validation(data, config.val_fraction, gen)
    device = torch.device(device) if device is not None else model_device(model)
    model.to(device)
    kind = data.kind if isinstance(data, Dataset) else _loader_kind(data)
    loss_fn = task_loss(kind, config.loss)
    optimizer = make_optimizer(model.parameters(), config.optimizer, config.lr, config.momentum, config.weight_decay)
    steps_per_epoch = -(-len(data) // config.batch_size) if isinstance(data, Dataset) else len(data)
    scheduler = make_scheduler(optimizer, config.schedule, steps_per_epoch * config.epochs)
    engine = Engine(device, precision, progress=progress)
    history: list[dict] = []
    best = (float("inf"), None, None)
    stale = 0

    def end_of_epoch(epoch: int, train_loss: float) -> bool:
        nonlocal best, stale
        record = {"epoch": epoch, "train_loss": train_loss}
        if val is not None and len(val):
            record["val_loss"] = float(loss_fn(predict(model, val), val.y))
        history.append(record)
        if config.patience is not None and "val_loss" in record:
            if record["val_loss"] < best[0]:
                best, stale = (record["val_loss"], epoch, copy.deepcopy(model.state_dict())), 0
            else:
                stale += 1
                return stale >= config.patience
        return False

    start = time.perf_counter()
    engine.run(
        model,
        optimizer,
        data,
        lambda b: loss_fn(forward(model, b.x), b.y),
        epochs=config.epochs,
        batch_size=config.batch_size,
        generator=gen,
        scheduler=scheduler,
        on_epoch=end_of_epoch,
        description="train",
    )
    if best[2] is not None:
        model.load_state_dict(best[2])
    return FitResult(model, engine.steps, time.perf_counter() - start, history, best[1])
