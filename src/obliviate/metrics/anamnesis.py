"""Relearn time and the Anamnesis Index (AIN): how quickly forgotten performance comes back.

A model that only hides what it knew recovers it after a few steps of fine-tuning on the
forgotten rows; a model that truly forgot needs about as long as the retrained reference,
which never saw them. Both metrics train deep copies, so they are off by default
(``evaluate(..., metrics=["anamnesis_index", "relearn_steps"])``).
"""

from __future__ import annotations

import copy
import math
from weakref import WeakKeyDictionary

import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import Tensor, nn

from obliviate.adapter import forward, model_device, predict
from obliviate.data import Dataset
from obliviate.engine import Engine, OptimizerName, make_optimizer
from obliviate.forget import UnlearningTask
from obliviate.metrics.base import MetricContext, metric
from obliviate.training import task_loss


class RelearnSettings(BaseModel):
    """One relearning recipe, applied identically to the unlearned and the reference model.

    Relearning data = every forget row plus ``retain_ratio`` times as many random retained rows
    (a forget-only stream would teach any model to predict the forgotten class everywhere,
    which "recovers" forget accuracy trivially). Progress is measured on the forget-test rows
    when the task has them (the forgotten class's held-out rows), else on the forget rows.
    A model that never gets there within ``max_steps`` scores ``max_steps`` (a lower bound).
    """

    model_config = ConfigDict(extra="forbid")

    alpha: float = Field(0.05, gt=0, lt=1)
    optimizer: OptimizerName = "adam"
    lr: float = Field(1e-3, gt=0)
    momentum: float = Field(0.9, ge=0, lt=1)
    batch_size: int = Field(32, ge=1)
    max_steps: int = Field(300, ge=1)
    retain_ratio: float = Field(1.0, ge=0)


def _performance(outputs: Tensor, y: Tensor, kind: str) -> float:
    """Accuracy in percent (classification) or mean squared error (regression)."""
    if kind == "classification":
        return float((outputs.argmax(1) == y).float().mean() * 100)
    return float(((outputs.reshape(len(outputs), -1)[:, 0] - y) ** 2).mean())


def _probe(task: UnlearningTask) -> Dataset:
    return task.forget_test if len(task.forget_test_idx) else task.forget


def recovered(value: float, target: float, kind: str, alpha: float) -> bool:
    """Classification: accuracy >= (1 - alpha) * target; regression: loss <= (1 + alpha) * target."""
    if kind == "classification":
        return value >= (1 - alpha) * target
    return value <= (1 + alpha) * target


def relearn_data(task: UnlearningTask, settings: RelearnSettings, seed: int) -> Dataset:
    """The forget rows plus a seeded random draw of retained rows (the same for every model)."""
    n_retain = min(len(task.retain_idx), round(settings.retain_ratio * len(task.forget_idx)))
    gen = torch.Generator().manual_seed(seed)
    extra = task.retain_idx[torch.randperm(len(task.retain_idx), generator=gen)[:n_retain]]
    return task.train.subset(torch.cat([task.forget_idx, extra]))


def relearn_steps(
    model: nn.Module,
    task: UnlearningTask,
    target: float,
    settings: RelearnSettings | None = None,
    *,
    seed: int = 0,
    device: str | torch.device | None = None,
) -> int:
    """Optimiser steps until a deep copy of ``model``, fine-tuned on the relearning data, gets its
    forget performance back to within ``alpha`` of ``target`` (the original model's); checked
    before the first step and after every step. ``model`` itself is not modified. The copy
    trains through the shared ``Engine`` (NaN guard included) where ``model`` lives, or on
    ``device``."""
    settings = settings or RelearnSettings()
    kind = task.kind
    probe = _probe(task)
    data = relearn_data(task, settings, seed)
    student = copy.deepcopy(model)
    engine = Engine(torch.device(device) if device is not None else model_device(model))
    student.to(engine.device)
    loss_fn = task_loss(kind)
    opt = make_optimizer(student.parameters(), settings.optimizer, settings.lr, settings.momentum)
    gen = torch.Generator().manual_seed(seed)

    def done() -> bool:
        recall = _performance(predict(student, probe), probe.y, kind)
        student.train()
        return recovered(recall, target, kind, settings.alpha)

    if done():
        return 0
    epochs = -(-settings.max_steps // max(1, -(-len(data) // settings.batch_size)))
    engine.run(
        student,
        opt,
        data,
        lambda b: loss_fn(forward(student, b.x), b.y),
        epochs=epochs,
        batch_size=settings.batch_size,
        generator=gen,
        max_steps=settings.max_steps,
        stop=done,
        description="relearn",
    )
    return engine.steps


def anamnesis_index(unlearned_steps: int, reference_steps: int) -> float:
    """AIN = relearn steps of the unlearned model / those of the reference (1 is ideal; far below
    1 means residual knowledge). A reference that needs no steps counts as one step."""
    return unlearned_steps / max(1, reference_steps)


_CACHE: WeakKeyDictionary[nn.Module, dict[tuple, int]] = WeakKeyDictionary()


def _cached_steps(ctx: MetricContext, model: nn.Module) -> int | None:
    """Relearn steps of ``model`` under the default settings; the reference's are computed once
    per evaluation even though every model's AIN needs them."""
    if ctx.original is None:
        return None
    probe_view = "forget_test" if len(ctx.task.forget_test_idx) else "forget"
    target = _performance(ctx.original[probe_view], ctx.labels(probe_view), ctx.task.kind)
    if math.isnan(target):
        return None
    key = (id(ctx.task), ctx.seed, str(ctx.device), target)
    per_model = _CACHE.setdefault(model, {})
    if key not in per_model:
        per_model[key] = relearn_steps(model, ctx.task, target, seed=ctx.seed, device=ctx.device)
    return per_model[key]


@metric(
    "relearn_steps",
    direction="reference",
    default=False,
    description="fine-tuning steps on forget rows (+ as many retained) until forget performance is back within 5%",
)
def relearn_time(ctx: MetricContext) -> float | None:
    steps = _cached_steps(ctx, ctx.model)
    return None if steps is None else float(steps)


@metric(
    "anamnesis_index",
    direction="reference",
    default=False,
    description="relearn steps of this model / of the retrained reference (1 ideal; << 1 means residual knowledge)",
)
def anamnesis(ctx: MetricContext) -> float | None:
    if ctx.reference_model is None:
        return None
    steps, ref_steps = _cached_steps(ctx, ctx.model), _cached_steps(ctx, ctx.reference_model)
    return None if steps is None or ref_steps is None else anamnesis_index(steps, ref_steps)
