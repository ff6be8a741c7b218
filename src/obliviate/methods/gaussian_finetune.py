"""Gaussian fine-tuning for regression: make the forget rows' targets uninformative noise.

Each forget row's target is replaced by a draw from the normal distribution fitted to all
training targets (their mean and std), and the model is fine-tuned on the whole training set
with those targets. The forget rows then pull predictions toward plausible but unrelated
values instead of their true ones, while the retain rows hold the rest in place.
"""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import Field
from torch import nn

from obliviate.adapter import forward
from obliviate.engine import OptimizerName, make_optimizer
from obliviate.forget import TaskView
from obliviate.methods.base import Method, MethodConfig, RunContext, register
from obliviate.training import task_loss


class GaussianFinetuneConfig(MethodConfig):
    """Paper setting: one epoch. Adam at 1e-3 because regression losses in target units are far
    larger than cross-entropy, and SGD at classification rates diverges on them."""

    epochs: int = Field(1, ge=1)
    lr: float = Field(1e-3, gt=0)
    optimizer: OptimizerName = "adam"
    batch_size: int = Field(64, ge=1)
    loss: Literal["mse", "l1"] = "mse"


@register
class GaussianFinetune(Method):
    """Redraw forget targets from the normal fitted to all targets, then fine-tune on the modified data."""

    name = "gaussian_finetune"
    config_class = GaussianFinetuneConfig
    needs = frozenset({"train", "forget"})
    kinds = frozenset({"regression"})

    def run(self, model: nn.Module, data: TaskView, ctx: RunContext) -> nn.Module:
        cfg = self.config
        train, mask = data.train, data.train_forget_mask
        y = train.y.clone()
        noise = torch.randn(int(mask.sum()), generator=ctx.generator)
        y[mask] = y.mean() + y.std() * noise
        loss_fn = task_loss("regression", cfg.loss)
        opt = make_optimizer(model.parameters(), cfg.optimizer, cfg.lr)
        ctx.optimize(
            model,
            opt,
            train.with_targets(y),
            cfg.batch_size,
            cfg.epochs,
            lambda b: loss_fn(forward(model, b.x), b.y),
            "gaussian",
        )
        return model
