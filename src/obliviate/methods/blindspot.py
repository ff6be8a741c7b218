"""Blindspot (Tarun et al., "Deep Regression Unlearning", ICML 2023): forget by copying a model
that never saw the forget rows.

A fresh model of the same architecture is trained briefly on the retain rows only (the
blindspot proxy). The student (a copy of the original) then takes one pass over retain and
forget rows: retain rows fit their labels, forget rows fit the proxy's predictions plus
``beta`` times the distance between the student's and the proxy's attention maps on the
chosen layers. Each batch weighs the two losses by its share of forget rows, so the forget
signal is as strong as the forget set is large and no more.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import Tensor, nn

from obliviate.adapter import forward
from obliviate.data import Batch, concat, iterate
from obliviate.engine import OptimizerName, make_optimizer
from obliviate.forget import TaskView
from obliviate.methods.base import Method, MethodConfig, RunContext, register
from obliviate.models import ActivationRecorder, attention_map, default_feature_layers, fresh_copy
from obliviate.training import TrainConfig, fit


class BlindspotConfig(MethodConfig):
    """Paper settings: proxy trained 2 epochs, student 1 epoch, beta 50, L1 loss, Adam.

    Checked on the bundled tasks (bench/regression.py, 3 seeds): with these settings the forget
    MAE lands near the retrained model's on Wage (ages 18-30) and elecdemand (a 5-day window).
    A longer proxy trades speed for fidelity unevenly: 10 proxy epochs halve W1 to retrain on
    elecdemand (0.17 -> 0.09) but cut the speed-up from about 4.6x to 1.4x, and make Wage worse
    (W1 1.5 -> 2.8), so the paper's 2 epochs stay the default.

    Deviation from the reference code, the attention distance: ours is the L2 norm, per forget
    row, of the difference between the student's and the proxy's normalised attention maps
    (mean over rows, summed over layers), and flat features keep one map value per unit. The
    reference takes the mean squared difference of maps that average over dimension 1; on
    the flat (B, H) features of an MLP that average leaves one value per row, which the
    normalisation sets to 1, so the reference's distance is identically zero there (issue 11's
    port) and beta does nothing. The norm (not its square) also keeps the gradient from
    vanishing as the maps approach the proxy's."""

    proxy_epochs: int = Field(2, ge=1, description="epochs of proxy training on the retain rows")
    proxy_lr: float = Field(1e-3, gt=0)
    epochs: int = Field(1, ge=1, description="student epochs over retain + forget rows")
    lr: float = Field(1e-3, gt=0)
    optimizer: OptimizerName = "adam"
    batch_size: int = Field(64, ge=1)
    beta: float = Field(50.0, ge=0, description="weight of the attention-map distance on forget rows")
    loss: Literal["l1", "mse"] = "l1"
    layers: list[str] | None = Field(None, description="layers whose attention maps are matched (default: the body)")


def feature_layers(model: nn.Module) -> list[str]:
    """``default_feature_layers`` of the first module below single-child wrappers (such as a target
    scale), named from the top so hooks find them."""
    prefix, inner = "", model
    children = list(inner.named_children())
    while len(children) == 1:
        name, inner = children[0]
        prefix += f"{name}."
        children = list(inner.named_children())
    return [prefix + name for name in default_feature_layers(inner)]


@register
class Blindspot(Method):
    """Fit retain labels, and on forget rows the outputs and attention maps of a proxy trained without them."""

    name = "blindspot"
    config_class = BlindspotConfig
    needs = frozenset({"retain", "forget"})
    kinds = frozenset({"regression"})

    def run(self, model: nn.Module, data: TaskView, ctx: RunContext) -> nn.Module:
        cfg = self.config
        retain, forget = data.retain, data.forget
        layers = cfg.layers or feature_layers(model)
        proxy = fresh_copy(model, seed=ctx.seed).to(ctx.device)
        recipe = TrainConfig(
            optimizer=cfg.optimizer, lr=cfg.proxy_lr, epochs=cfg.proxy_epochs, batch_size=cfg.batch_size, loss=cfg.loss
        )
        recipe = recipe.model_copy(update={"seed": ctx.seed})
        ctx.steps += fit(proxy, retain, recipe, device=ctx.device, precision=ctx.precision).steps
        proxy.eval()
        outs, maps = [], []
        with torch.no_grad(), ActivationRecorder(proxy, layers) as rec:
            for b in iterate(forget, 1024, device=ctx.device):
                outs.append(forward(proxy, b.x).reshape(len(b)))
                maps.append([attention_map(rec.activations[name]) for name in layers])
        proxy_maps = [torch.cat(per_layer) for per_layer in zip(*maps, strict=True)]

        n_retain = len(retain)
        mixture = concat([retain, forget.with_targets(torch.cat(outs).cpu())])
        error = F.l1_loss if cfg.loss == "l1" else F.mse_loss

        def loss_on_batch(b: Batch) -> Tensor:
            with ActivationRecorder(model, layers) as recorder:
                out = forward(model, b.x).reshape(len(b))
            f = b.index >= n_retain
            frac = f.float().mean()
            loss = (1 - frac) * error(out[~f], b.y[~f]) if (~f).any() else out.sum() * 0
            if f.any():
                rows = b.index[f] - n_retain
                attention = sum(
                    (attention_map(recorder.activations[name])[f] - maps[rows]).norm(dim=1).mean()
                    for name, maps in zip(layers, proxy_maps, strict=True)
                )
                loss = loss + frac * (error(out[f], b.y[f]) + cfg.beta * attention)
            return loss

        opt = make_optimizer(model.parameters(), cfg.optimizer, cfg.lr)
        ctx.optimize(model, opt, mixture, cfg.batch_size, cfg.epochs, loss_on_batch, "blindspot")
        return model
