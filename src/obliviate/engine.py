"""The training engine: one loop object behind ``fit``, every method's passes, GKT and relearning.

``Engine`` owns what every optimisation loop needs and must not drift between copies:

- device and precision: ``precision="bf16" | "fp16" | "fp32"`` runs forward passes under
  ``torch.autocast`` (fp16 on CUDA with a gradient scaler);
- the NaN guard: a non-finite loss stops the run with ``FloatingPointError`` before it
  reaches the weights;
- gradient clipping (``clip_norm``), the learning-rate schedule (stepped per optimiser step),
  and step counting (``steps``, the total over the engine's life);
- stop hooks: ``max_steps`` per run and ``stop()``, checked after every step;
- the BatchNorm policy: ``"train"`` (normal) or ``"frozen"`` (BatchNorm layers normalise with,
  and never update, their running statistics; ``obliviate.blocks.batchnorm``).

``run`` is the epoch loop over a ``Dataset`` (or a torch ``DataLoader``) read through
``obliviate.data.loader``; ``step`` is one guarded optimiser step for loops that make their own
batches (GKT's generator samples).

``make_optimizer`` and ``make_scheduler`` are the one way every loop builds its optimiser and
learning-rate schedule, so a name in a config means the same thing in ``fit``, every method,
GKT, relearning and the LM loops.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Literal

import torch
from torch import Tensor, nn

from obliviate.blocks.batchnorm import frozen_batchnorm
from obliviate.data.dataset import Dataset
from obliviate.data.loader import Batch, batches_of
from obliviate.progress import Progress

Precision = Literal["fp32", "bf16", "fp16"]
BatchNormPolicy = Literal["train", "frozen"]
PRECISIONS: dict[str, torch.dtype | None] = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}
OptimizerName = Literal["adam", "sgd", "adamw"]
Schedule = Literal["constant", "cosine", "step"]


def make_optimizer(
    params: Iterable[Tensor],
    name: OptimizerName,
    lr: float,
    momentum: float = 0.9,
    weight_decay: float = 0.0,
) -> torch.optim.Optimizer:
    """The optimiser ``name`` over ``params`` (``momentum`` applies to SGD only; torch's defaults otherwise)."""
    if name == "adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)
    if name == "adamw":
        return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay)
    raise ValueError(f"unknown optimizer {name!r}; choose adam, adamw or sgd")


def make_scheduler(
    optimizer: torch.optim.Optimizer, schedule: Schedule, total_steps: int
) -> torch.optim.lr_scheduler.LRScheduler | None:
    """The learning-rate schedule over ``total_steps`` optimiser steps: cosine decay to zero, a
    tenfold drop at each third, or none (``constant``)."""
    if schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(1, total_steps))
    if schedule == "step":
        return torch.optim.lr_scheduler.StepLR(optimizer, step_size=max(1, total_steps // 3), gamma=0.1)
    if schedule == "constant":
        return None
    raise ValueError(f"unknown schedule {schedule!r}; choose constant, cosine or step")


@dataclass
class Engine:
    """Device, precision, guard, clipping, step count and stop rules shared by every loop."""

    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    precision: Precision = "fp32"
    clip_norm: float | None = None
    progress: bool = False
    steps: int = 0

    def __post_init__(self) -> None:
        self.device = torch.device(self.device)
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {sorted(PRECISIONS)}, not {self.precision!r}")
        self._scalers: dict[int, torch.amp.GradScaler] = {}

    def autocast(self) -> contextlib.AbstractContextManager:
        """Mixed precision for forward passes (a no-op at fp32)."""
        dtype = PRECISIONS[self.precision]
        if dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=dtype)

    def _scaler(self, optimizer: torch.optim.Optimizer) -> torch.amp.GradScaler | None:
        if self.precision != "fp16" or self.device.type != "cuda":
            return None
        return self._scalers.setdefault(id(optimizer), torch.amp.GradScaler("cuda"))

    def step(
        self,
        loss: Tensor,
        optimizer: torch.optim.Optimizer,
        scheduler: torch.optim.lr_scheduler.LRScheduler | None = None,
        where: str = "training",
    ) -> None:
        """One guarded optimiser step on ``loss``: NaN guard, backward, clipping, step, schedule."""
        if not torch.isfinite(loss):
            raise FloatingPointError(f"{where}: loss became {loss.item()}")
        optimizer.zero_grad(set_to_none=True)
        scaler = self._scaler(optimizer)
        if scaler is None:
            loss.backward()
            self._clip(optimizer)
            optimizer.step()
        else:
            scaler.scale(loss).backward()
            scaler.unscale_(optimizer)
            self._clip(optimizer)
            scaler.step(optimizer)
            scaler.update()
        if scheduler is not None:
            scheduler.step()
        self.steps += 1

    def _clip(self, optimizer: torch.optim.Optimizer) -> None:
        if self.clip_norm is not None:
            params = [p for group in optimizer.param_groups for p in group["params"] if p.grad is not None]
            torch.nn.utils.clip_grad_norm_(params, self.clip_norm)

    def run(
        self,
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        data: object,
        loss_on_batch: Callable[[Batch], Tensor],
        *,
        epochs: int = 1,
        batch_size: int = 64,
        generator: torch.Generator | None = None,
        scheduler: torch.optim.lr_scheduler.LRScheduler | None = None,
        max_steps: int | None = None,
        stop: Callable[[], bool] | None = None,
        on_epoch: Callable[[int, float], bool] | None = None,
        batchnorm: BatchNormPolicy = "train",
        description: str = "train",
    ) -> list[float]:
        """Shuffled epochs over ``data`` (a ``Dataset``, or a DataLoader's own batches); returns the
        mean loss of each finished epoch.

        Ends after ``max_steps`` steps of this run, once ``stop()`` is true (checked after each
        step), or when ``on_epoch(epoch, mean_loss)`` returns true."""
        start = self.steps
        history: list[float] = []
        model.train()
        frozen = frozen_batchnorm(model) if batchnorm == "frozen" else contextlib.nullcontext()
        per_epoch = -(-len(data) // batch_size) if isinstance(data, Dataset) else len(data)  # a DataLoader: batches
        with frozen, Progress(description, total=epochs * per_epoch, enabled=self.progress) as bar:
            for epoch in range(epochs):
                total, rows = 0.0, 0
                for batch in batches_of(data, batch_size, shuffle=True, generator=generator, device=self.device):
                    with self.autocast():
                        loss = loss_on_batch(batch)
                    self.step(loss, optimizer, scheduler, where=f"{description} (epoch {epoch})")
                    total += loss.item() * len(batch)
                    rows += len(batch)
                    bar.advance()
                    if (max_steps is not None and self.steps - start >= max_steps) or (stop is not None and stop()):
                        return history
                history.append(total / max(rows, 1))
                bar.note(loss=round(history[-1], 4))
                if on_epoch is not None and on_epoch(epoch, history[-1]):
                    break
        return history
