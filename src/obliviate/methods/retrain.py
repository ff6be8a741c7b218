"""Retraining from scratch on the retained rows: exact, slow, the reference every method is judged by."""

from __future__ import annotations

from pydantic import Field
from torch import nn

from obliviate.forget import TaskView
from obliviate.methods.base import Method, MethodConfig, RunContext, register
from obliviate.models import fresh_copy
from obliviate.training import TrainConfig, fit


class RetrainConfig(MethodConfig):
    recipe: TrainConfig = Field(default_factory=TrainConfig)
    """The original model's training recipe; the reference must be trained the same way."""


@register
class Retrain(Method):
    """Gold standard: re-initialise the model and train it on the retain set only."""

    name = "retrain"
    config_class = RetrainConfig
    needs = frozenset({"retain"})

    def run(self, model: nn.Module, data: TaskView, ctx: RunContext) -> nn.Module:
        model = fresh_copy(model, seed=ctx.seed).to(ctx.device)
        recipe = self.config.recipe.model_copy(update={"seed": ctx.seed})
        result = fit(model, data.retain, recipe, device=ctx.device, precision=ctx.precision, progress=ctx.progress)
        ctx.steps += result.steps
        return result.model
