"""UNSIR (Tarun et al. 2023): error-maximising noise, impair, repair, without the forget set."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

from obliviate.adapter import forward
from obliviate.data import Batch, Dataset, concat, iterate
from obliviate.engine import make_optimizer
from obliviate.forget import TaskView
from obliviate.methods.base import Method, MethodConfig, MethodError, RunContext, register
from obliviate.synthesis import class_noise


class UnsirConfig(MethodConfig):
    """Noise search as in the paper (Adam lr 0.1, L2 weight 0.1 on the mean squared row norm),
    20 steps, BatchNorm on running statistics; noise labelled with its own forgotten class
    (the public notebook labels every row class 0 and uses 3 rows per copy: not reproduced).

    Deviations from the paper and notebook, each measured (Avg Gap, class 3, mean of seeds):
    - Up to 300 retained rows per class (``retain_per_class``; None reads them all). The earlier
      default of 50 rows per class left MNIST-5k class 3 at 25 +- 23% (Avg Gap 12.4, seeds 0-2,
      the earlier benchmark recipe) and scored 3.2 on digits (seeds 0-1); with all rows 1.4 on
      MNIST-5k (seeds 0-2) and 0.3 on digits. The retain pass does much of the work, so a small
      sample starves it. Two epochs over all of Dr (impair, repair) cost about a fifth of
      retraining (4.7x in Run E), most of it in those steps (1.49 of 1.70 s, the noise search
      0.19); 300 per class keeps three quarters of MNIST-5k's 400 and all of digits' ~145. On
      MNIST-5k class 3 (training seeds 0-2, unlearning seeds 200-201): all rows 2.78 +- 0.71,
      350 2.07, 300 1.73 +- 0.49, 250 2.35; batch 64 instead of 32: 2.02, with 250 rows 2.76.
    - Impair Adam 0.01, repair 2e-3, batch 32. The paper's 0.02 / 0.01 work with all rows but
      less well: Avg Gap 2.1 on MNIST-5k and 2.4 on digits (retained accuracy 92.1% vs 94.1% on
      MNIST-5k; mia_entropy 7.9% vs 0.3% on digits).
    - Noise clamped to the range of the retained inputs (``clamp_noise``). Free noise grows
      to row norms of 26-30 on MNIST-5k against 9.2 for real rows, impairing BatchNorm-scaled
      activations rather than the class; clamped, Avg Gap 2.4 instead of 3.7 on digits at the
      paper's rates."""

    noise_per_class: int = Field(64, ge=1, description="noise rows learned for each forgotten class")
    noise_steps: int = Field(20, ge=1, description="Adam steps of the noise search")
    noise_lr: float = Field(0.1, gt=0)
    noise_l2: float = Field(0.1, ge=0, description="weight of the mean squared norm of the noise")
    clamp_noise: bool = Field(True, description="keep noise values within the range of the retained inputs")
    retain_per_class: int | None = Field(300, ge=1, description="retained rows sampled per class; None: all")
    impair_lr: float = Field(1e-2, gt=0)
    repair_lr: float = Field(2e-3, gt=0)
    impair_epochs: int = Field(1, ge=1)
    repair_epochs: int = Field(1, ge=1)
    batch_size: int = Field(32, ge=1)


def sample_per_class(data: Dataset, per_class: int, generator: torch.Generator) -> Dataset:
    """Up to ``per_class`` random rows of every class present in ``data``."""
    picks = []
    for c in data.y.unique():
        rows = torch.nonzero(data.y == c).flatten()
        picks.append(rows[torch.randperm(len(rows), generator=generator)[:per_class]])
    return data.subset(torch.cat(picks).sort().values)


def input_range(data: Dataset, batch_size: int = 1024) -> tuple[float, float, float]:
    """Smallest and largest input value of ``data`` and its mean row norm, read batch by batch."""
    low, high, norms = float("inf"), float("-inf"), 0.0
    for b in iterate(data, batch_size):
        low, high = min(low, float(b.x.min())), max(high, float(b.x.max()))
        norms += float(b.x.flatten(1).norm(dim=1).sum())
    return low, high, norms / max(len(data), 1)


@register
class Unsir(Method):
    """Error-maximising noise per forgotten class, impair on it, repair on retained rows; never reads Df.

    Learn noise that maximises the loss of each forgotten class, train on it mixed with the
    retained rows (impair), then on the retained rows alone (repair). Reads the retain set
    (all of it, or a per-class sample); never the forget set."""

    name = "unsir"
    config_class = UnsirConfig
    needs = frozenset({"retain"})
    kinds = frozenset({"classification"})
    scenarios = frozenset({"class"})
    continuous_inputs = True

    def run(self, model: nn.Module, data: TaskView, ctx: RunContext) -> nn.Module:
        cfg = self.config
        if not data.forget_classes:
            raise MethodError("unsir forgets whole classes; the task names none")
        labels = torch.tensor(data.forget_classes).repeat_interleave(cfg.noise_per_class)
        retain = data.retain
        if cfg.retain_per_class is not None:
            retain = sample_per_class(retain, cfg.retain_per_class, ctx.generator)
        low, high, retain_norm = input_range(retain)
        noise = class_noise(
            model,
            labels.to(ctx.device),
            data.input_shape,
            maximise=True,
            steps=cfg.noise_steps,
            lr=cfg.noise_lr,
            l2=cfg.noise_l2,
            bounds=(low, high) if cfg.clamp_noise else None,
            generator=ctx.generator,
        )
        noise_norm = float(noise.flatten(1).norm(dim=1).mean())
        ctx.details.update(noise_row_norm=noise_norm, retain_row_norm=retain_norm, retain_rows=len(retain))
        mixture = concat([Dataset(noise.cpu(), labels, name="unsir-noise"), retain])

        def loss(b: Batch) -> torch.Tensor:
            return F.cross_entropy(forward(model, b.x), b.y)

        impair = make_optimizer(model.parameters(), "adam", cfg.impair_lr)
        ctx.optimize(model, impair, mixture, cfg.batch_size, cfg.impair_epochs, loss, "unsir impair")
        repair = make_optimizer(model.parameters(), "adam", cfg.repair_lr)
        ctx.optimize(model, repair, retain, cfg.batch_size, cfg.repair_epochs, loss, "unsir repair")
        return model
