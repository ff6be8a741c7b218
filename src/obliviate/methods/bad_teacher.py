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

    Whole classes also take 2 epochs over the forget rows mixed with 15% of Dr (the paper's one
    epoch with 30% elsewhere). The forgotten rows end near the random teacher's flat outputs,
    whose argmax still lands on the forgotten class for a share of them; more passes over the
    forget rows with fewer retain rows per pass shrink that share on MNIST-5k. MNIST-5k class 3
    (training seeds 0-2, unlearning seeds 200-205, Avg Gap / forget accuracy): 1 epoch at 30%
    (the earlier default) 11.7 / 23%; lr 3e-3 10.9 / 19%; lr 5e-3 12.5 / 25%; 2 epochs 10.6 /
    19%; 3 epochs 10.8 / 20%; 30% -> 100% of Dr 15.0 / 36%; 15% x 1 epoch 14.9 (retained
    accuracy 84%); 15% x 2 epochs 9.9 / 13%; 10% x 3 / 4 / 5 epochs 10.4 / 9.6 / 10.0; 15% x 3
    epochs 10.4; 15% x 4 epochs 9.3 / 12.5%. 4 epochs is not the default because digits class 3
    (training seeds 0-1, unlearning seeds 100-102) keeps the class there: 1 epoch at 30% 1.21 /
    0%; 15% x 2 epochs 0.92 / 0%; 15% x 4 epochs 8.58 / 29%; 30% x 2 / 4 epochs 9.47 / 33% and
    4.33 / 14%. Benchmark (MNIST-5k, seeds 0-2 x 100-102, Run E): 10.25 -> 10.19. Earlier
    (MNIST-5k, unlearning seeds 100-102): T = 2 worse (13.7), T = 0.5 9.7 at 80% test accuracy.
    The flat outputs keep the entropy MIA near 1% against retraining's ~22% under every setting
    (about 5 points of Avg Gap). Rows that share their class with retained rows are already
    over-forgotten at 1 epoch and 1e-3 (MNIST-5k random 10%: MIA 46% against 60%), so those
    scenarios keep the paper's epoch and share. After Run F (tuning seeds, default 9.86; digits
    class 3, training seeds 0-3, 0.70): T 0.5 / 0.75 / 1.5 11.87 / 10.16 / 9.94; the random
    teacher's logits x2 / x4 9.97 / 10.17 (it is flat to a few hundredths of a logit, so the
    MIA stays at 0.5%); frozen BatchNorm statistics 10.14; batch 16 9.15 but digits 12.12 (class
    at 42%); lr 1.5e-3 9.65 but digits 0.90; lr 2.5e-3 10.29; 12% of Dr 10.38. None kept."""

    scenario_defaults = {
        "class": {"epochs": 2, "lr": 2e-3, "retain_fraction": 0.15},
        "*": {"epochs": 1, "lr": 1e-3, "retain_fraction": 0.3},
    }
    epochs: int | None = Field(None, ge=1, description="None: 2 for whole classes, else 1")
    lr: float | None = Field(None, gt=0, description="None: 2e-3 for whole classes, else 1e-3")
    temperature: float = Field(1.0, gt=0)
    retain_fraction: float | None = Field(
        None, gt=0, le=1, description="random share of the retain set mixed in; None: 0.15 for whole classes, else 0.3"
    )
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

        opt = make_optimizer(model.parameters(), "adam", cfg.lr)
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
