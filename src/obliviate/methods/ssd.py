"""Selective Synaptic Dampening (Foster et al. 2024): shrink weights specialised to the forget set."""

from __future__ import annotations

import warnings

import torch
from pydantic import Field
from torch import Tensor, nn

from obliviate.adapter import predict
from obliviate.blocks.importance import gradient_statistics
from obliviate.data import Dataset
from obliviate.forget import TaskView
from obliviate.methods.base import Method, MethodConfig, RunContext, register
from obliviate.training import task_loss

MIN_LOSS_RISE = 0.01
"""Relative rise of the mean forget loss below which dampening is said to have left Df untouched."""


class SsdConfig(MethodConfig):
    """Paper: alpha (selection) 10, lambda (dampening) 1, one fixed alpha for every model.

    A fixed alpha does not transfer. The importance on all data includes the forget rows, so
    the ratio I_Df / I_D of a class that is a tenth of the data is bounded by roughly ten: on
    MNIST-5k the largest ratio of any weight is 6-8 and the paper's alpha 10 (or 50) selects
    nothing, returning the model unchanged. On digits the largest ratio is ~300, alpha 10
    takes retained accuracy to 18-47% and alpha 50 works. So by default alpha is read off the
    measured ratios: the ``selection_quantile`` quantile of I_Df / I_D over all weights (at
    least 1), i.e. the top 1 - q share of weights by ratio is dampened. q = 0.99 was chosen on
    digits and MNIST-5k class forgetting (see docs/methods_classification.md). A given
    ``alpha`` is used as is."""

    alpha: float | None = Field(None, gt=0, description="select weights alpha times more important to Df; None: auto")
    selection_quantile: float = Field(
        0.99, gt=0, lt=1, description="with alpha None: alpha = this quantile of the Df/D importance ratios"
    )
    dampening: float = Field(1.0, gt=0, description="lambda: scale selected weights by lambda * I_D / I_Df (max 1)")
    batch_size: int = Field(64, ge=1, description="mini-batch size of the importance estimate")


def ratio_quantile(ratios: list[Tensor], q: float) -> float:
    """The ``q`` quantile of all ratios (numpy's "lower" method: an observed value); ``kthvalue``
    has no size limit, unlike ``torch.quantile``."""
    flat = torch.cat([r.flatten() for r in ratios]).float()
    return float(flat.kthvalue(int(q * (len(flat) - 1)) + 1).values)


@torch.no_grad()
def forget_fit(model: nn.Module, forget: Dataset, kind: str) -> tuple[float, float | None]:
    """Mean loss on the forget rows, and accuracy (percent) for classification, in eval mode."""
    out = predict(model, forget)
    y = forget.y
    acc = float((out.argmax(1) == y).float().mean() * 100) if kind == "classification" else None
    return float(task_loss(kind)(out, y)), acc


@register
class Ssd(Method):
    """Dampen weights far more important (diagonal Fisher) to the forget set than to all data; no training.

    Estimate each weight's importance (diagonal Fisher) on the forget set and on the full
    training set, and dampen the weights far more important to the forget set. No training
    steps. Reads the forget set and the full training set."""

    name = "ssd"
    config_class = SsdConfig
    needs = frozenset({"forget", "train"})
    scenarios = frozenset({"class", "subclass", "random", "target_range"})

    def run(self, model: nn.Module, data: TaskView, ctx: RunContext) -> nn.Module:
        cfg = self.config
        loss_fn = task_loss(data.kind)

        def importance(view):
            return gradient_statistics(model, view, loss_fn, squared=True, batch_size=cfg.batch_size, device=ctx.device)

        on_forget, on_all = importance(data.forget), importance(data.train)
        ratios = {name: on_forget[name] / on_all[name].clamp_min(1e-30) for name in on_forget}
        top_ratio = max(float(r.max()) for r in ratios.values())
        alpha = cfg.alpha
        if alpha is None:
            alpha = max(1.0, ratio_quantile(list(ratios.values()), cfg.selection_quantile))
        before = forget_fit(model, data.forget, data.kind)
        dampened, total = 0, 0
        with torch.no_grad():
            for name, p in model.named_parameters():
                if name not in ratios:
                    continue
                r = ratios[name]
                selected = r > alpha
                factor = (cfg.dampening / r.clamp_min(1e-30)).clamp(max=1.0)
                p.mul_(torch.where(selected, factor, torch.ones_like(factor)))
                dampened, total = dampened + int(selected.sum()), total + selected.numel()
        after = forget_fit(model, data.forget, data.kind)
        # The usable alpha depends on the data and model; these tell a user where it lies.
        ctx.details.update(
            alpha=alpha,
            dampened=dampened,
            weights=total,
            max_importance_ratio=top_ratio,
            forget_loss=[before[0], after[0]],
            forget_acc=[before[1], after[1]],
        )
        if dampened == 0:
            warnings.warn(
                f"ssd dampened no weight: the largest forget/all importance ratio is {top_ratio:.3g}, "
                f"below alpha={alpha:g}; the model is unchanged (lower alpha to select weights)",
                stacklevel=2,
            )
        elif after[0] < before[0] * (1 + MIN_LOSS_RISE):
            warnings.warn(
                f"ssd dampened {dampened} weights but the forget loss barely moved ({before[0]:.4g} -> {after[0]:.4g}"
                + (f", forget accuracy {before[1]:.1f}% -> {after[1]:.1f}%" if before[1] is not None else "")
                + "); the forget set is probably not forgotten (lower alpha or raise the dampening)",
                stacklevel=2,
            )
        return model
