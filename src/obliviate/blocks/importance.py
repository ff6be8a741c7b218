"""Per-parameter gradient statistics over a data set (SSD's Fisher diagonal, SalUn's saliency)."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

from obliviate.adapter import forward
from obliviate.data import Dataset, iterate


def gradient_statistics(
    model: nn.Module,
    data: Dataset,
    loss_fn: Callable[[Tensor, Tensor], Tensor],
    *,
    squared: bool,
    batch_size: int = 64,
    device: str | torch.device | None = None,
) -> dict[str, Tensor]:
    """Mean over mini-batches of each parameter's gradient (``squared``: of its square).

    With ``squared`` this is the empirical diagonal Fisher information that SSD compares
    between the forget set and the full data; without it, the mean gradient whose magnitude
    SalUn thresholds. The model is evaluated in eval mode so BatchNorm statistics stay as
    they are; its weights and ``.grad`` fields are not changed.
    """
    params = {name: p for name, p in model.named_parameters() if p.requires_grad}
    totals = {name: torch.zeros_like(p) for name, p in params.items()}
    was_training = model.training
    model.eval()
    count = 0
    for batch in iterate(data, batch_size, device=device):
        grads = torch.autograd.grad(loss_fn(forward(model, batch.x), batch.y), list(params.values()))
        for name, g in zip(params, grads, strict=True):
            totals[name] += g.pow(2) if squared else g
        count += 1
    model.train(was_training)
    return {name: t / max(count, 1) for name, t in totals.items()}
