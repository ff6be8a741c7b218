"""Keep BatchNorm layers on their running statistics while a model trains or is probed."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from torch import nn


def _force_eval(module: nn.Module, _inputs) -> None:
    module.training = False


@contextmanager
def frozen_batchnorm(model: nn.Module) -> Iterator[nn.Module]:
    """Inside the block every BatchNorm layer normalises with, and never updates, its running
    statistics, even when a training loop calls ``model.train()``.

    Why: batches of noise, or of a single forgotten class, would otherwise both be normalised
    with unrepresentative batch statistics and pollute the running statistics the model keeps
    for every other class.
    """
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    handles = [m.register_forward_pre_hook(_force_eval) for m in norms]
    try:
        yield model
    finally:
        for handle in handles:
            handle.remove()
        for m in norms:
            m.training = model.training
