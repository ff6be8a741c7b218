"""SalUn (Fan et al. 2024): relabel unlearning restricted to forget-salient weights."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import Tensor, nn

from obliviate.blocks.importance import gradient_statistics
from obliviate.blocks.relabel import WrongLabels, random_label_training
from obliviate.engine import OptimizerName
from obliviate.forget import TaskView
from obliviate.methods.base import Method, MethodConfig, RunContext, register


class SalunConfig(MethodConfig):
    """Mask share 0.5 as in the paper. Its SGD (lr ~0.01-0.02, ~10 epochs) drops retained
    digits accuracy to 35-85%; Adam 1e-3 for 1 epoch over the forget rows on sub-class and
    random rows (where a second epoch over-forgets), hence the scenario-dependent defaults.

    Whole classes: 4 epochs, retain loss weight 2, mask share 0.4, and each forget row's wrong
    label is the original's most likely other class (``wrong_labels="nearest"``; see the
    deviations). With random labels the class is forgotten (0%) under every setting below, but
    retained accuracy stays 3-4 points below retraining and the forget rows end with flat
    outputs (entropy MIA 2-3% against retraining's ~22%, about 5 points of Avg Gap). Doubling
    the rehearsal weight with one more epoch keeps more retained accuracy, and a smaller mask
    leaves more weights alone. MNIST-5k class 3 (training seeds 0-2, unlearning seeds 200-205),
    Avg Gap, random labels: 3 epochs at share 0.5 (Run D) 6.19; share 0.7 6.43, 1.0 7.29; lr
    2e-3 x 2 epochs 6.32; batch 64 x 5 epochs 6.22; retain ratio 5 x 4 epochs 6.23; weight 2 x 4
    epochs 6.00, with share 0.4 5.82 (Runs E-F), 0.3 5.94 (class at 1%), 0.4 x 5 epochs 6.07;
    weight 3 x 5 epochs 6.08; weight 2, ratio 2 x 5 epochs 6.37; at share 0.4 x 4 epochs: ratio 4
    5.95, lr 7e-4 x 6 epochs 6.05, weight 3 5.77. Nearest labels at share 0.4, weight 2: 4
    epochs 0.82 (MIA 19.3%, retained 93.6%), 2 epochs 2.13, 1 epoch 6.50 (class at 13%); share
    0.5, weight 1: 4 epochs 1.29, 1 epoch 4.31. Earlier (seeds 0-1, unlearning seeds 100-102):
    1 epoch 11.0 (class at 18%), lr 5e-4 x 3 epochs 8.81, share 0.3 at 2 epochs 8.15.

    Deviations from the reference code:
    - Forget rows get a label drawn from the *other* classes. The reference draws from all
      classes, so a tenth of the forget rows keep their true label at every step and a
      forgotten class survives at 30-71% on MNIST-5k (issue 11's port); wrong labels only
      take it to retraining's 0%.
    - Whole classes: each forget row is labelled with the original's most likely class other
      than its own, fixed for the run, instead of a uniform wrong label redrawn at every step
      (the paper's rule, ``wrong_labels="random"``, kept for sub-classes and random rows). A
      model retrained without the class puts its rows on the classes they resemble: on MNIST-5k
      (training seeds 0-2, retrain seeds 200-201) it gives 80-87% of them the original's
      runner-up class, with mean top probability 0.66-0.69. Uniform labels teach a flat output
      over the nine others, which is what kept the entropy MIA at 2% and cost retained
      accuracy. MNIST-5k class 3 (seeds above), Avg Gap / MIA: redrawn 5.82 / 2.3%, one
      uniform label per row for the run 5.76 / 2.4%, the original's distribution over the
      other classes as a soft target 1.54 / 15.4%, nearest class 0.82 / 19.3% (retraining
      20.8%). Digits class 3 (training seeds 0-3, unlearning seeds 100-102): 1.55, 1.64, 0.48,
      0.77.
    - Each forget batch is paired with ``retain_ratio`` (3) times as many random retain rows.
      The reference runs over Df and Dr together; pairing
      one retain row per forget row rehearsed too little on random rows (one MNIST-5k seed
      lost 18 points of retained accuracy). On digits random 10% (seeds 0-1) Avg Gap is 1.95
      at ratio 1, 1.78 at 3 and 2.21 at 9 (all of Dr per epoch); 3 costs four times the
      forget-sized steps and stays far cheaper than a pass over Dr."""

    scenario_defaults = {
        "class": {"mask_fraction": 0.4, "epochs": 4, "retain_weight": 2.0, "wrong_labels": "nearest"},
        "*": {"mask_fraction": 0.5, "epochs": 1, "retain_weight": 1.0, "wrong_labels": "random"},
    }
    mask_fraction: float | None = Field(
        None,
        gt=0,
        le=1,
        description="share of weights (largest saliency) that may change; None: 0.4 for whole classes, else 0.5",
    )
    epochs: int | None = Field(None, ge=1, description="None: 4 for whole classes, else 1")
    lr: float = Field(1e-3, gt=0)
    optimizer: OptimizerName = "adam"
    batch_size: int = Field(32, ge=1)
    retain_weight: float | None = Field(None, ge=0, description="None: 2 for whole classes, else 1")
    retain_ratio: float = Field(3.0, gt=0, description="retain rows rehearsed per forget row")
    wrong_labels: WrongLabels | None = Field(
        None,
        description="random: redrawn every step (paper); nearest: the original's runner-up class, fixed; "
        "None: nearest for whole classes, else random",
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

    Find the weights whose forget-loss gradient is largest, then run relabel training (forget
    rows with wrong labels plus retain rows) that updates only those weights.
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
                epochs=cfg.epochs,
                lr=cfg.lr,
                batch_size=cfg.batch_size,
                optimizer=cfg.optimizer,
                retain_weight=cfg.retain_weight,
                retain_ratio=cfg.retain_ratio,
                wrong_labels=cfg.wrong_labels,
                description="salun",
            )
        finally:
            for handle in handles:
                handle.remove()
        return model
