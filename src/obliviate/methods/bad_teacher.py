"""Bad Teacher (Chundawat et al. 2023): distil from a competent and an incompetent teacher."""

from __future__ import annotations

import torch
from pydantic import Field
from torch import nn

from obliviate.adapter import forward, predict
from obliviate.blocks.distill import frozen, kl_to_teacher
from obliviate.data import concat
from obliviate.engine import make_optimizer
from obliviate.forget import TaskView
from obliviate.methods.base import Method, MethodConfig, RunContext, register
from obliviate.models import fresh_copy


class BadTeacherConfig(MethodConfig):
    """Paper: 1 epoch, Adam 1e-4, T=1, ~30% of Dr. On digits that leaves a forgotten class
    at 98-100% accuracy (a few steps at 1e-4 barely move the student), so the default is
    Adam with batch 32: 1e-3 on random rows and sub-classes, 2e-3 on whole classes.

    Measured on MNIST-5k class 3 (training seeds 0-1, unlearning seeds 100-102), Avg Gap /
    forget accuracy: lr 1e-3 11.4 / 18%, 2e-3 9.5 / 10%, 3e-3 9.2 / 10% (sd 2.9 points of
    forget accuracy), 2 epochs at 1e-3 10.2 / 16%; T = 2 is worse (13.7), T = 0.5 9.7 at 80%
    test accuracy. The forgotten rows end near the random teacher's flat outputs, so the entropy
    MIA stays near 1% against retraining's ~22% whatever the setting (about 5 points of Avg
    Gap). Rows that share their class with retained rows are already over-forgotten at 1e-3
    (MNIST-5k random 10%: MIA 46% against 60%), hence the lower rate there."""

    epochs: int = Field(1, ge=1)
    lr: float | None = Field(None, gt=0, description="None: 2e-3 for whole classes, else 1e-3")
    temperature: float = Field(1.0, gt=0)
    retain_fraction: float = Field(0.3, gt=0, le=1, description="random share of the retain set mixed in")
    batch_size: int = Field(32, ge=1)


@register
class BadTeacher(Method):
    """Distil from the original on retain rows and from a random-init teacher on forget rows.

    Student (a copy of the model) matches a randomly initialised teacher on forget rows and
    the original model on a random share of retain rows (KL on softened outputs, no labels).
    Reads the forget set and the retain set (only a sample of it is used)."""

    name = "bad_teacher"
    config_class = BadTeacherConfig
    needs = frozenset({"forget", "retain"})
    kinds = frozenset({"classification"})
    scenarios = frozenset({"class", "subclass", "random"})

    def run(self, model: nn.Module, data: TaskView, ctx: RunContext) -> nn.Module:
        cfg = self.config
        competent = frozen(model)
        incompetent = frozen(fresh_copy(model, seed=ctx.seed))
        retain = data.retain
        keep = torch.randperm(len(retain), generator=ctx.generator)[: max(1, round(cfg.retain_fraction * len(retain)))]
        mixture = concat([data.forget, retain.subset(keep)])
        is_forget = torch.zeros(len(mixture), dtype=torch.bool)
        is_forget[: len(data.forget)] = True
        targets = torch.where(is_forget[:, None], predict(incompetent, mixture), predict(competent, mixture))
        targets = targets.to(ctx.device)

        lr = cfg.lr or (2e-3 if data.scenario == "class" else 1e-3)
        opt = make_optimizer(model.parameters(), "adam", lr)
        ctx.optimize(
            model,
            opt,
            mixture,
            cfg.batch_size,
            cfg.epochs,
            lambda b: kl_to_teacher(forward(model, b.x), targets[b.index], cfg.temperature),
            "bad teacher",
        )
        return model
