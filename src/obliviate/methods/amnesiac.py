"""Amnesiac unlearning, relabelling variant (Graves et al. 2021)."""

from __future__ import annotations

import torch.nn.functional as F
from pydantic import Field
from torch import nn

from obliviate.adapter import forward
from obliviate.blocks.relabel import random_wrong_labels
from obliviate.data import concat
from obliviate.engine import OptimizerName, make_optimizer
from obliviate.forget import TaskView
from obliviate.methods.base import Method, MethodConfig, RunContext, register


class AmnesiacConfig(MethodConfig):
    """The paper relabels once and fine-tunes briefly on the mixture; one epoch at SGD 0.01
    (momentum 0.9) forgets a digits class and keeps retained accuracy."""

    epochs: int = Field(1, ge=1)
    lr: float = Field(0.01, gt=0)
    optimizer: OptimizerName = "sgd"
    batch_size: int = Field(64, ge=1)


@register
class Amnesiac(Method):
    """Relabel forget rows once with wrong labels, mix them into the retain set, fine-tune.

    Give every forget row one random wrong label, mix those rows into the retain set and
    fine-tune on the mixture. Reads the forget and retain sets."""

    name = "amnesiac"
    config_class = AmnesiacConfig
    needs = frozenset({"forget", "retain"})
    kinds = frozenset({"classification"})
    scenarios = frozenset({"class", "subclass", "random"})

    def run(self, model: nn.Module, data: TaskView, ctx: RunContext) -> nn.Module:
        cfg = self.config
        forget, retain = data.forget, data.retain
        wrong = random_wrong_labels(forget.y, data.num_classes, ctx.generator)
        mixture = concat([forget.with_targets(wrong), retain])
        opt = make_optimizer(model.parameters(), cfg.optimizer, cfg.lr)
        ctx.optimize(
            model,
            opt,
            mixture,
            cfg.batch_size,
            cfg.epochs,
            lambda b: F.cross_entropy(forward(model, b.x), b.y),
            "amnesiac",
        )
        return model
