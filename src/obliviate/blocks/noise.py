"""Learned noise inputs: error-maximising (UNSIR) and error-minimising (zero-shot methods)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from obliviate.adapter import forward
from obliviate.blocks.batchnorm import frozen_batchnorm


def learn_noise(
    model: nn.Module,
    labels: Tensor,
    input_shape: tuple[int, ...],
    *,
    maximise: bool = True,
    steps: int = 40,
    lr: float = 0.1,
    l2: float = 0.1,
    bounds: tuple[float, float] | None = None,
    generator: torch.Generator | None = None,
    device: str | torch.device = "cpu",
) -> Tensor:
    """One noise input per entry of ``labels``, optimised against the frozen ``model``.

    Minimises ``s * CE(model(N), labels) + l2 * mean_i ||N_i||^2`` with Adam, where ``s`` is -1
    for error-maximising noise (inputs the model finds most unlike their class) and +1 for
    error-minimising noise. The model's weights and BatchNorm statistics are left untouched:
    only the noise receives gradients, and BatchNorm runs on its running statistics.

    ``bounds`` (lo, hi) clamps every noise value after each step (a projection), keeping the
    noise in the range of real inputs. Without it the search escapes that range: BatchNorm on
    running statistics does not rescale a large input, so the loss grows with the input's
    scale and the noise learns to be large rather than unlike its class (UNSIR's defaults on
    MNIST-5k: row norms 26-30 free, 15-18 clamped to [0, 1], 9.2 for real digits).
    """
    labels = labels.to(device)
    noise = torch.randn((len(labels), *input_shape), generator=generator).to(device)
    if bounds is not None:
        noise.clamp_(*bounds)
    noise.requires_grad_(True)
    opt = torch.optim.Adam([noise], lr=lr)
    sign = -1.0 if maximise else 1.0
    was_training = model.training
    model.eval()
    with frozen_batchnorm(model):
        for _ in range(steps):
            loss = sign * F.cross_entropy(forward(model, noise), labels) + l2 * noise.pow(2).flatten(1).sum(1).mean()
            opt.zero_grad(set_to_none=True)
            loss.backward(inputs=[noise])
            opt.step()
            if bounds is not None:
                with torch.no_grad():
                    noise.clamp_(*bounds)
    model.train(was_training)
    return noise.detach()
