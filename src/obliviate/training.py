"""One training function for originals, retrained references, proxies and shards."""

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

from obliviate.data import Dataset
from obliviate.progress import Progress


class TrainConfig(BaseModel):
    """The training recipe. Retraining reuses the original's recipe on the retained rows."""

    model_config = ConfigDict(extra="forbid")

    optimizer: Literal["adam", "sgd"] = "adam"
    lr: float = Field(1e-3, gt=0)
    momentum: float = Field(0.9, ge=0, lt=1)
    weight_decay: float = Field(0.0, ge=0)
    schedule: Literal["constant", "cosine", "step"] = "constant"
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


def make_optimizer(params, name: str, lr: float, momentum: float = 0.9, weight_decay: float = 0.0):
    if name == "adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay)
    raise ValueError(f"unknown optimizer {name!r}")


def batches(
    n: int, batch_size: int, generator: torch.Generator | None = None, shuffle: bool = True
) -> Iterator[Tensor]:
    """Index tensors covering ``range(n)``; the data stay in memory and are sliced per batch."""
    order = torch.randperm(n, generator=generator) if shuffle else torch.arange(n)
    yield from order.split(batch_size)


@torch.no_grad()
def predict(model: nn.Module, X: Tensor, batch_size: int = 1024, device: str | torch.device = "cpu") -> Tensor:
    """Outputs of ``model`` on ``X`` in eval mode, on the CPU; the model's mode is restored."""
    was_training = model.training
    model.eval()
    outs = [model(X[i : i + batch_size].to(device)).float().cpu() for i in range(0, len(X), batch_size)]
    model.train(was_training)
    if not outs:
        return torch.zeros((0,), dtype=torch.float32)
    return torch.cat(outs)


def accuracy(model: nn.Module, data: Dataset, device: str | torch.device = "cpu") -> float:
    """Percent of rows classified correctly (NaN for an empty set)."""
    if len(data) == 0:
        return float("nan")
    return float((predict(model, data.X, device=device).argmax(1) == data.y).float().mean() * 100)


def seed_everything(seed: int) -> torch.Generator:
    """Seed torch's global generator and return a dedicated generator for shuffling."""
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


def _scheduler(optimizer, schedule: str, total_steps: int):
    if schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(1, total_steps))
    if schedule == "step":
        return torch.optim.lr_scheduler.StepLR(optimizer, step_size=max(1, total_steps // 3), gamma=0.1)
    return None


def _split_validation(data: Dataset, fraction: float, gen: torch.Generator) -> tuple[Dataset, Dataset | None]:
    if fraction <= 0:
        return data, None
    order = torch.randperm(len(data), generator=gen)
    n_val = max(1, int(len(data) * fraction))
    return data.subset(order[n_val:]), data.subset(order[:n_val])


def fit(
    model: nn.Module,
    data: Dataset,
    config: TrainConfig | None = None,
    *,
    val: Dataset | None = None,
    device: str | torch.device = "cpu",
    progress: bool = False,
) -> FitResult:
    """Train ``model`` in place on ``data`` with ``config`` and return it with its history.

    Early stopping (``patience``) watches the validation loss on ``val`` or on a
    ``val_fraction`` held out of ``data``, and restores the best epoch's weights.
    Seeded runs repeat bit for bit on the CPU.
    """
    config = config or TrainConfig()
    gen = seed_everything(config.seed)
    if len(data) == 0:
        raise ValueError("cannot train on an empty data set")
    if val is None:
        data, val = _split_validation(data, config.val_fraction, gen)
    model.to(device)
    loss_fn = task_loss(data.kind, config.loss)
    optimizer = make_optimizer(model.parameters(), config.optimizer, config.lr, config.momentum, config.weight_decay)
    steps_per_epoch = -(-len(data) // config.batch_size)
    scheduler = _scheduler(optimizer, config.schedule, steps_per_epoch * config.epochs)
    X, y = data.X.to(device), data.y.to(device)
    history: list[dict] = []
    best = (float("inf"), None, None)
    stale = steps = 0
    start = time.perf_counter()
    with Progress("train", total=config.epochs * steps_per_epoch, enabled=progress) as bar:
        for epoch in range(config.epochs):
            model.train()
            total = 0.0
            for idx in batches(len(X), config.batch_size, gen):
                idx = idx.to(device)
                loss = loss_fn(model(X[idx]), y[idx])
                if not torch.isfinite(loss):
                    raise FloatingPointError(f"training loss became {loss.item()} at epoch {epoch}")
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                if scheduler is not None:
                    scheduler.step()
                total += loss.item() * len(idx)
                steps += 1
                bar.advance()
            record = {"epoch": epoch, "train_loss": total / len(X)}
            if val is not None and len(val):
                with torch.no_grad():
                    record["val_loss"] = float(loss_fn(predict(model, val.X, device=device), val.y))
            history.append(record)
            bar.note(**{k: round(v, 4) for k, v in record.items()})
            if config.patience is not None and "val_loss" in record:
                if record["val_loss"] < best[0]:
                    best, stale = (record["val_loss"], epoch, copy.deepcopy(model.state_dict())), 0
                else:
                    stale += 1
                    if stale >= config.patience:
                        break
    if best[2] is not None:
        model.load_state_dict(best[2])
    return FitResult(model, steps, time.perf_counter() - start, history, best[1])
