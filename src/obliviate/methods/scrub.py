"""SCRUB (Kurmanji et al. 2023): a student that moves away from the teacher on Df, stays close on Dr."""

from __future__ import annotations

import torch.nn.functional as F
from pydantic import Field
from torch import Tensor, nn

from obliviate.adapter import forward
from obliviate.blocks.distill import frozen, kl_to_teacher
from obliviate.data import Batch
from obliviate.engine import OptimizerName, make_optimizer
from obliviate.forget import TaskView
from obliviate.methods.base import Method, MethodConfig, RunContext, register


class ScrubConfig(MethodConfig):
    """As the paper and its code: KL(teacher || student) on softened outputs times T^2 in both
    passes, min-step loss = alpha * KL + gamma * CE with gamma 0.99, one optimiser shared by the
    max and min passes (its moments carry over between them).

    Deviations from the reference code, each measured:
    - T = 2 (the code: 4). At T = 4 the max pass flattens the forgotten class's outputs: the
      class is forgotten (0%) but its rows end far less confident than under retraining
      (entropy MIA 9.9% against 22.1%, MNIST-5k class 3, seeds 0-2; Avg Gap 3.57). At T = 2
      (MNIST-5k class 3, training seeds 0-1): MIA 16.5% against 23.2%, Avg Gap 2.17; T = 1:
      2.40, 1.5: 2.16, 3: 2.94, 4: 3.59 (each with alpha = 1/T^2). Seeds 0-2 (Run D): 1.80.
      Random 10%, seeds 0-2: Avg Gap 1.38 -> 1.07, U-LiRA AUC 0.47 -> 0.52.
    - alpha = 1/T^2 = 0.25 (the code sets 1e-3): the T^2-scaled KL then weighs in the min step
      what an unscaled KL did at alpha 1. At alpha 1 and T = 4 the min step's KL is 16x the task
      loss and pulls the class back: MNIST-5k class 3 stays at 68% (Avg Gap 20.5, seeds 0-2).
      At T = 2, alpha 0.125 / 0.25 / 0.5 give Avg Gap 2.02 / 2.17 / 2.58.
    - Adam 1e-3 and a single epoch (one max pass, one min pass) instead of the code's
      schedule of several max epochs followed by min-only epochs: on digits the single epoch
      already matches retraining on a forgotten class, and extra min-only epochs let the
      teacher's soft labels on retain rows teach the class back (forget accuracy 0% -> 90%
      after a second epoch; MNIST-5k, T = 4: Avg Gap 3.59 -> 4.03, the MIA gap stays).
    - No learning-rate decay within the run (the code decays it at set epochs; with one epoch
      there is nothing to decay)."""

    epochs: int = Field(1, ge=1, description="total epochs; each has a min pass over Dr")
    max_epochs: int = Field(1, ge=0, description="epochs (the first ones) that also have a max pass over Df")
    lr: float = Field(1e-3, gt=0)
    optimizer: OptimizerName = "adam"
    temperature: float = Field(2.0, gt=0)
    alpha: float = Field(0.25, ge=0, description="weight of KL to the teacher in the min step")
    gamma: float = Field(0.99, ge=0, description="weight of the task loss in the min step")
    batch_size: int = Field(64, ge=1)
    forget_batch_size: int = Field(32, ge=1)
    min_steps: int | None = Field(None, ge=1, description="steps of each min pass (None: one epoch over Dr)")


@register
class Scrub(Method):
    """Move away from the original on forget rows (max KL), stay close on retain rows (min KL + CE).

    Alternate max passes (maximise KL to the original model on forget rows) with min passes
    (minimise KL plus cross-entropy on retain rows); the KL is scaled by T^2 as in the paper's
    code. Reads the forget and retain sets."""

    name = "scrub"
    config_class = ScrubConfig
    needs = frozenset({"forget", "retain"})
    kinds = frozenset({"classification"})
    scenarios = frozenset({"class", "subclass", "random"})

    def run(self, model: nn.Module, data: TaskView, ctx: RunContext) -> nn.Module:
        cfg = self.config
        teacher = frozen(model)
        T = cfg.temperature
        forget, retain = data.forget, data.retain
        opt = make_optimizer(model.parameters(), cfg.optimizer, cfg.lr)  # one optimiser for both passes

        def kd(student: Tensor, x) -> Tensor:
            # T^2 keeps the gradient of the softened KL on the scale of the hard-label loss (Hinton et al.)
            return T * T * kl_to_teacher(student, forward(teacher, x), T)

        def max_loss(b: Batch) -> Tensor:
            return -kd(forward(model, b.x), b.x)

        def min_loss(b: Batch) -> Tensor:
            out = forward(model, b.x)
            task = cfg.gamma * F.cross_entropy(out, b.y)
            return task + cfg.alpha * kd(out, b.x) if cfg.alpha else task  # alpha 0: no teacher pass

        for epoch in range(cfg.epochs):
            if epoch < cfg.max_epochs:
                ctx.optimize(model, opt, forget, cfg.forget_batch_size, 1, max_loss, "scrub max")
            ctx.optimize(model, opt, retain, cfg.batch_size, 1, min_loss, "scrub min", max_steps=cfg.min_steps)
        return model
