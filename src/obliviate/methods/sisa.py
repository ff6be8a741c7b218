"""SISA as a registered method: exact forgetting by retraining only the affected shards."""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import Field
from torch import nn

from obliviate.forget import TaskView
from obliviate.methods.base import Method, MethodConfig, MethodError, RunContext, register
from obliviate.sisa import SISAEnsemble, train_sisa
from obliviate.training import TrainConfig


class SisaConfig(MethodConfig):
    """Used only when the model given is not yet a SISA ensemble (then one is trained from scratch
    on the kept rows); an existing ensemble is retrained with the recipe it was trained with."""

    shards: int = Field(4, ge=1)
    slices: int = Field(4, ge=1)
    aggregation: Literal["mean", "vote"] = "mean"
    recipe: TrainConfig = Field(default_factory=TrainConfig)


@register
class Sisa(Method):
    """SISA: retrain only the shards holding forgotten rows, from the checkpoint before their slice."""

    name = "sisa"
    config_class = SisaConfig
    needs = frozenset({"train", "forget"})
    kinds = frozenset({"classification"})

    @classmethod
    def check_model(cls, model: nn.Module, task) -> None:
        if not isinstance(model, SISAEnsemble) and getattr(model, "obliviate_spec", None) is None:
            raise MethodError(
                "sisa rebuilds its shard models by name: use a SISA ensemble or a model made by build_model"
            )

    def run(self, model: nn.Module, data: TaskView, ctx: RunContext) -> nn.Module:
        mask = data.train_forget_mask
        if isinstance(model, SISAEnsemble):
            try:
                ctx.steps += model.forget(data.train, mask, seed=ctx.seed, device=ctx.device)["steps"]
            except ValueError as exc:
                raise MethodError(f"sisa: {exc}") from None
            return model
        cfg = self.config
        kept = data.train.subset(torch.nonzero(~mask).flatten())
        ensemble, steps = train_sisa(
            model, kept, cfg.shards, cfg.slices, cfg.recipe.model_copy(update={"seed": ctx.seed}),
            cfg.aggregation, seed=ctx.seed, device=ctx.device,
        )  # fmt: skip
        ctx.steps += steps
        return ensemble
