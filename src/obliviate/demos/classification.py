"""The demo: train on bundled data, forget a class with several methods (``auto`` among them), and show
the gaps to retraining beside the verdict a user without a retrained model would get."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
from torch import nn

from obliviate.auto import AutoError
from obliviate.data import load_data
from obliviate.evaluation import evaluate
from obliviate.forget import ForgetSpec, UnlearningTask
from obliviate.methods import unlearn
from obliviate.models import build_model
from obliviate.records import Report, RunLog
from obliviate.training import TrainConfig, fit

DEMO_RECIPE = TrainConfig(optimizer="adam", lr=2e-3, epochs=15, batch_size=64)


@dataclass
class DemoResult:
    report: Report
    models: dict[str, nn.Module]
    train_seconds: float
    notes: list[str] = field(default_factory=list)
    """What ``auto`` chose, or why it returned nothing."""


def run_demo(
    data: str = "digits",
    architecture: str = "cnn",
    spec: ForgetSpec | None = None,
    methods: Sequence[str] = ("auto", "bad_teacher"),
    recipe: TrainConfig = DEMO_RECIPE,
    seed: int = 0,
    progress: bool = False,
    model_kwargs: dict | None = None,
    device: str | torch.device = "cpu",
) -> DemoResult:
    """Train the original, retrain the reference, run ``methods`` and evaluate them all.

    ``model_kwargs`` go to ``build_model`` (for example a regression model's target scale).
    """
    split = load_data(data, seed=seed)
    spec = spec or ForgetSpec(classes=[3])
    task = UnlearningTask.build(split, spec)
    recipe = recipe.model_copy(update={"seed": seed})
    original = build_model(
        architecture, split.train.input_shape, split.train.num_outputs, seed=seed, **(model_kwargs or {})
    )
    trained = fit(original, split.train, recipe, device=device, progress=progress)
    models: dict[str, nn.Module] = {"original": trained.model}
    logs: dict[str, RunLog] = {}
    notes: list[str] = []
    for name in ("retrain", *methods):
        config = {"recipe": recipe} if name == "retrain" else {}
        if name == "auto":  # its budget is a share of what training took here
            config = {"recipe": recipe, "retrain_seconds": trained.seconds * len(task.retain) / len(task.train)}
        try:
            result = unlearn(trained.model, task, name, seed=seed, device=device, progress=progress, **config)
        except AutoError as exc:
            notes.append(str(exc))
            continue
        models[name], logs[name] = result.model, result.log
        if name == "auto":
            notes.append(
                f"auto chose {result.log.details['chosen']['method']} after {len(result.log.details['search'])} tries"
            )
    report = evaluate(task, models, reference="retrain", logs=logs, seed=seed, device=device)
    return DemoResult(report, models, trained.seconds, notes)
