"""The regression and forecasting demos: bundled data, a scaled MLP or LSTM, and the regression methods."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import torch

from obliviate.data import load_data
from obliviate.demos.classification import DemoResult, run_demo
from obliviate.forget import ForgetSpec
from obliviate.models.forecasting import target_scale
from obliviate.training import TrainConfig


@dataclass(frozen=True)
class Preset:
    data: str
    base: str
    spec: ForgetSpec
    recipe: TrainConfig
    model_kwargs: dict = field(default_factory=dict)


PRESETS = {
    # Wage with age as the target: forget everyone aged 18-30 (about a sixth of the rows).
    "regression": Preset(
        "wage",
        "mlp",
        ForgetSpec(target_range=(18, 30)),
        TrainConfig(optimizer="adam", lr=2e-3, epochs=30, batch_size=64),
        {"hidden": [128, 64]},
    ),
    # Hourly Victorian demand: forget 14-18 January 2014, the Melbourne heatwave (days 13-18).
    "forecasting": Preset(
        "elecdemand",
        "lstm",
        ForgetSpec(time_window=(13, 18)),
        TrainConfig(optimizer="adam", lr=2e-3, epochs=15, batch_size=64),
    ),
}

REGRESSION_METHODS = ("finetune", "gradient_ascent", "gaussian_finetune", "blindspot")


def run_regression_demo(
    task: str,
    methods: Sequence[str] | None = None,
    seed: int = 0,
    progress: bool = False,
    device: str | torch.device = "cpu",
) -> DemoResult:
    """``run_demo`` with a task's preset: its data, forget request, recipe and target-scaled model."""
    if task not in PRESETS:
        raise ValueError(f"unknown demo task {task!r}; choose classification, {', '.join(PRESETS)}")
    preset = PRESETS[task]
    scale = target_scale(load_data(preset.data, seed=seed).train)
    return run_demo(
        preset.data,
        "scaled",
        preset.spec,
        methods or REGRESSION_METHODS,
        preset.recipe,
        seed=seed,
        progress=progress,
        model_kwargs={"base": preset.base, **scale, **preset.model_kwargs},
        device=device,
    )
