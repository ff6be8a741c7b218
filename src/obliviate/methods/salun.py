"""SalUn (Fan et al. 2024): random-label unlearning restricted to forget-salient weights."""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import Tensor, nn

from obliviate.blocks.importance import gradient_statistics
from obliviate.blocks.relabel import random_label_training, relabel_epochs
from obliviate.forget import TaskView
from obliviate.methods.base import Method, MethodConfig, RunContext, register


class SalunConfig(MethodConfig):
    """Mask share 0.5 as in the paper. Its SGD (lr ~0.01-0.02, ~10 epochs) drops retained
    digits accuracy to 35-85%; Adam 1e-3 for 2 epochs over the forget rows matches retraining
    on a forgotten class, and 1 epoch is better for sub-class and random rows (where a second
    epoch over-forgets), hence the scenario-dependent default.

    Deviations from the reference code:
    - Forget rows get a label drawn from the *other* classes. The reference draws from all
      classes, so a tenth of the forget rows keep their true label at every step and a
      forgotten class survives at 30-71% on MNIST-5k (issue 11's port); wrong labels only
      take it to retraining's 0%.
    - Each forget batch is paired with ``retain_ratio`` times as many random retain rows:
      1 for whole classes, 3 otherwise. The reference runs over Df and Dr together; pairing
      one retain row per forget row rehearsed too little on random rows (one MNIST-5k seed
      lost 18 points of retained accuracy). On digits random 10% (seeds 0-1) Avg Gap is 1.95
      at ratio 1, 1.78 at 3 and 2.21 at 9 (all of Dr per epoch); 3 costs four times the
      forget-sized steps and stays far cheaper than a pass over Dr."""

    mask_fraction: float = Field(0.5, gt=0, le=1, description="share of weights (largest saliency) that may change")
    epochs: int | None = Field(None, ge=1, description="None: 2 for whole classes, else 1")
    lr: float = Field(1e-3, gt=0)
    optimizer: Literal["sgd", "adam"] = "adam"
    batch_size: int = Field(32, ge=1)
    retain_weight: float = Field(1.0, ge=0)
    retain_ratio: float | None = Field(
        None, gt=0, description="retain rows rehearsed per forget row; None: 1 for whole classes, else 3"
    )


def saliency_masks(grads: dict[str, Tensor], fraction: float) -> dict[str, Tensor]:
    """1 for the ``fraction`` of weights with the largest |gradient| over the whole model."""
    flat = torch.cat([g.abs().flatten() for g in grads.values()])
    k = max(1, int(round(fraction * len(flat))))
    cut = flat.topk(k).values.min()
    return {name: (g.abs() >= cut).float() for name, g in grads.items()}


@register
class Salun(Method):
    """Random-label unlearning restricted to the weights most salient to the forget loss.

    Find the weights whose forget-loss gradient is largest, then run random-label training
    (forget rows with random wrong labels plus retain rows) that updates only those weights.
    Reads the forget and retain sets."""

    name = "salun"
    config_class = SalunConfig
    needs = frozenset({"forget", "retain"})
    kinds = frozenset({"classification"})
    scenarios = frozenset({"class", "subclass", "random"})

    def run(self, model: nn.Module, data: TaskView, ctx: RunContext) -> nn.Module:
        cfg = self.config
        forget = data.forget
        grads = gradient_statistics(model, forget, F.cross_entropy, squared=False, device=ctx.device)
        masks = saliency_masks(grads, cfg.mask_fraction)
        params = dict(model.named_parameters())
        handles = [params[name].register_hook(lambda g, m=mask: g * m) for name, mask in masks.items()]
        try:
            random_label_training(
                model,
                forget,
                data.retain,
                ctx,
                epochs=relabel_epochs(cfg.epochs, data.scenario),
                lr=cfg.lr,
                batch_size=cfg.batch_size,
                optimizer=cfg.optimizer,
                retain_weight=cfg.retain_weight,
                retain_ratio=cfg.retain_ratio or (1.0 if data.scenario == "class" else 3.0),
                description="salun",
            )
        finally:
            for handle in handles:
                handle.remove()
        return model
