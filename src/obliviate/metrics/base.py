"""The metric registry and what a metric function sees: cached outputs, never a fresh forward pass."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

import torch
from torch import Tensor, nn

from obliviate.forget import UnlearningTask

Direction = Literal["reference", "higher", "lower", "info"]
"""How to read a metric: ``reference`` = closer to the retrained model is better."""

VIEW_NAMES = ("forget", "retain", "test", "forget_test", "retain_test")


@dataclass
class MetricContext:
    """One model's cached outputs on every view, with the original's and the reference's."""

    task: UnlearningTask
    name: str
    model: nn.Module
    outputs: dict[str, Tensor]
    original: dict[str, Tensor] | None = None
    reference: dict[str, Tensor] | None = None
    original_model: nn.Module | None = None
    reference_model: nn.Module | None = None
    seed: int = 0
    device: torch.device | None = None
    """Where to run extra forward passes; None: wherever each model lives."""
    options: dict[str, dict] = field(default_factory=dict)
    """Per-metric settings by metric name, e.g. ``{"lira": {"shadow_models": 16}}``."""

    def labels(self, view: str) -> Tensor:
        return getattr(self.task, view).y


MetricFn = Callable[[MetricContext], "float | dict[str, float] | None"]


@dataclass(frozen=True)
class MetricInfo:
    name: str
    fn: MetricFn
    kinds: frozenset[str]
    direction: Direction
    description: str
    default: bool = True


METRICS: dict[str, MetricInfo] = {}


def metric(
    name: str,
    *,
    direction: Direction,
    description: str,
    kinds: tuple[str, ...] = ("classification", "regression"),
    default: bool = True,
    replace: bool = False,
) -> Callable[[MetricFn], MetricFn]:
    """Register a metric. The function returns one number, a dict of named numbers (stored as
    ``name.key``), or None when it does not apply to this task. ``default=False`` metrics
    (expensive ones) run only when asked for by name. A name already registered is refused
    unless ``replace=True``, so a plugin never silently changes what a built-in metric means."""

    def wrap(fn: MetricFn) -> MetricFn:
        if not replace and name in METRICS and METRICS[name].fn is not fn:
            raise ValueError(f"metric {name!r} is already registered; pass replace=True to replace it")
        METRICS[name] = MetricInfo(name, fn, frozenset(kinds), direction, description, default)
        return fn

    return wrap
