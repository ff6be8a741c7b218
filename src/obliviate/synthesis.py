"""Inputs synthesised from a trained model alone: the raw material of data-free unlearning.

Zero-shot and zero-glance methods cannot read the rows they unlearn, so they make stand-ins
by optimising inputs against the frozen model:

- ``class_noise``: error-maximising noise (inputs the model finds *least* like a class; the
  "impair" signal of UNSIR and EMMN) or error-minimising noise (inputs the model confidently
  assigns to a class; EMMN's stand-in for retained data), each with an L2 penalty.
- ``invert_classes``: DeepInversion-style class impressions that also match the statistics
  every BatchNorm layer recorded on the real training data, so they look more like data.

The model is frozen during every search (``model.eval()``: BatchNorm uses, and never
updates, its running statistics; parameters get no gradients), and its mode and
``requires_grad`` flags are restored afterwards.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from obliviate.adapter import forward
from obliviate.engine import make_optimizer
from obliviate.training import batches

BATCHNORM_TYPES = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)


@contextmanager
def frozen(model: nn.Module) -> Iterator[nn.Module]:
    """Eval mode and no parameter gradients inside the block; both restored on exit."""
    was_training = model.training
    flags = [p.requires_grad for p in model.parameters()]
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    try:
        yield model
    finally:
        for p, flag in zip(model.parameters(), flags, strict=True):
            p.requires_grad_(flag)
        model.train(was_training)


def class_labels(classes: Sequence[int], per_class: int, device: str | torch.device = "cpu") -> Tensor:
    """``per_class`` copies of each class id, grouped by class: the targets of a synthesis run."""
    if per_class < 1:
        raise ValueError(f"per_class must be at least 1, got {per_class}")
    return torch.as_tensor(list(classes), dtype=torch.long, device=device).repeat_interleave(per_class)


def _start(n: int, input_shape: Sequence[int], generator: torch.Generator | None, device) -> Tensor:
    return torch.randn((n, *input_shape), generator=generator).to(device).requires_grad_()


def class_noise(
    model: nn.Module,
    labels: Tensor,
    input_shape: Sequence[int],
    *,
    maximise: bool,
    steps: int = 50,
    lr: float = 0.1,
    l2: float = 0.1,
    bounds: tuple[float, float] | None = None,
    generator: torch.Generator | None = None,
) -> Tensor:
    """One noise input per label that maximises (or minimises) the frozen model's loss for it,
    on ``labels``' device: UNSIR's and EMMN's error-maximising noise, EMMN's error-minimising noise.

    Loss per search step: ``-+CE(M(N), label) + l2 * mean_i ||N_i||^2`` with Adam at ``lr``
    (UNSIR's settings are ``l2=0.1, lr=0.1``). The L2 term keeps maximising noise bounded,
    since cross-entropy alone can grow without limit. All rows are learned in one batch:
    their losses are independent because BatchNorm is frozen.

    ``bounds`` (lo, hi) clamps every noise value at the start and after each step (a
    projection), keeping the noise in the range of real inputs. Without it the search escapes
    that range: BatchNorm on running statistics does not rescale a large input, so the loss
    grows with the input's scale and the noise learns to be large rather than unlike its class
    (UNSIR's defaults on MNIST-5k: row norms 26-30 free, 15-18 clamped to [0, 1], 9.2 for real
    digits).
    """
    device = labels.device
    noise = _start(len(labels), input_shape, generator, device)
    opt = make_optimizer([noise], "adam", lr)
    sign = -1.0 if maximise else 1.0
    with frozen(model):
        _clamp(noise, bounds)
        for _ in range(steps):
            loss = sign * F.cross_entropy(forward(model, noise), labels) + l2 * noise.pow(2).flatten(1).sum(1).mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            _clamp(noise, bounds)
    return noise.detach()


@torch.no_grad()
def _clamp(x: Tensor, bounds: tuple[float, float] | None) -> None:
    if bounds is not None:
        x.clamp_(*bounds)


class BatchNormMatcher:
    """Forward hooks on every BatchNorm layer adding up how far the current batch's per-channel
    mean and variance are from the layer's running statistics (DeepInversion's feature prior)."""

    def __init__(self, model: nn.Module):
        self.layers = [m for m in model.modules() if isinstance(m, BATCHNORM_TYPES) and m.running_mean is not None]
        self.loss: Tensor | float = 0.0
        self._handles: list = []

    def _hook(self, module: nn.Module, inputs: tuple[Tensor, ...], _output: Tensor) -> None:
        x = inputs[0]
        dims = [d for d in range(x.ndim) if d != 1]
        mean, var = x.mean(dims), x.var(dims, unbiased=False)
        self.loss = (
            self.loss
            + torch.linalg.vector_norm(mean - module.running_mean)
            + torch.linalg.vector_norm(var - module.running_var)
        )

    def __enter__(self) -> BatchNormMatcher:
        self._handles = [m.register_forward_hook(self._hook) for m in self.layers]
        return self

    def __exit__(self, *exc) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()

    def take(self) -> Tensor | float:
        """The loss accumulated since the last call (and reset it)."""
        loss, self.loss = self.loss, 0.0
        return loss


def total_variation(x: Tensor) -> Tensor:
    """Mean absolute difference of neighbouring pixels (0 for inputs that are not images)."""
    if x.ndim < 4:
        return x.new_zeros(())
    return (x[..., 1:, :] - x[..., :-1, :]).abs().mean() + (x[..., :, 1:] - x[..., :, :-1]).abs().mean()


def invert_classes(
    model: nn.Module,
    labels: Tensor,
    input_shape: Sequence[int],
    *,
    steps: int = 200,
    lr: float = 0.1,
    bn_weight: float = 1.0,
    tv_weight: float = 0.1,
    l2: float = 1e-3,
    batch_size: int = 256,
    generator: torch.Generator | None = None,
) -> Tensor:
    """DeepInversion: one input per label, optimised so that the frozen model predicts the label
    while every BatchNorm layer sees the batch statistics it recorded on the training data.

    Loss per batch and step: ``CE + bn_weight * sum_layers(||mu - running_mean|| + ||var -
    running_var||) + tv_weight * TV + l2 * mean ||x||^2``. Batches mix classes (rows are
    shuffled first) because the running statistics describe a mixture of classes; a model
    without BatchNorm gets plain class impressions. Returns the inputs in ``labels``' order.
    """
    device = labels.device
    out = torch.empty((len(labels), *input_shape), device=device)
    order = torch.randperm(len(labels), generator=generator).to(device)
    with frozen(model), BatchNormMatcher(model) as bn:
        for idx in order.split(batch_size):
            x = _start(len(idx), input_shape, generator, device)
            y = labels[idx]
            opt = make_optimizer([x], "adam", lr)
            for _ in range(steps):
                bn.take()
                ce = F.cross_entropy(forward(model, x), y)
                loss = (
                    ce + bn_weight * bn.take() + tv_weight * total_variation(x) + l2 * x.pow(2).flatten(1).sum(1).mean()
                )
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
            out[idx] = x.detach()
    return out


@torch.no_grad()
def confident_rows(model: nn.Module, X: Tensor, labels: Tensor, keep: float) -> Tensor:
    """Indices of the rows the model assigns to their label with the lowest prediction entropy.

    Rows predicted as another class are dropped first; of the rest, the ``keep`` fraction with
    the lowest entropy is kept within each class, so no class is filtered out entirely.
    """
    if not 0 < keep <= 1:
        raise ValueError(f"keep must be in (0, 1], got {keep}")
    with frozen(model):
        logits = torch.cat([forward(model, X[idx]) for idx in batches(len(X), 1024, shuffle=False)])
    logp = logits.log_softmax(1)
    entropy = -(logp.exp() * logp).sum(1)
    correct = logits.argmax(1) == labels
    kept = []
    for c in labels.unique():
        rows = torch.nonzero((labels == c) & correct).flatten()
        if len(rows) == 0:
            continue
        n = max(1, round(keep * int((labels == c).sum())))
        kept.append(rows[entropy[rows].argsort()[:n]])
    return torch.cat(kept).sort().values if kept else torch.zeros(0, dtype=torch.long, device=X.device)
