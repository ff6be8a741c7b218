"""Read intermediate activations of any ``nn.Module`` through forward hooks, and the attention
maps (Zagoruyko & Komodakis) that methods match between models."""

from __future__ import annotations

from collections.abc import Iterable

import torch.nn.functional as F
from torch import Tensor, nn


def default_feature_layers(model: nn.Module) -> list[str]:
    """The model's top-level children except the last (the head): the usual attention layers."""
    names = [name for name, _ in model.named_children()]
    return names[:-1] if len(names) > 1 else names


def attention_map(activation: Tensor | tuple) -> Tensor:
    """Per-row L2-normalised spatial attention: the channel mean of squared activations.

    Images (B, C, H, W) average over C; sequences (B, T, H) over the hidden units, leaving one
    value per time step; flat features (B, H) keep one value per unit. Tuples (LSTM outputs)
    use their first element. Computed in float32, so mixed-precision activations compare exactly.
    """
    a = activation[0] if isinstance(activation, tuple) else activation
    a = a.float().pow(2)
    if a.ndim == 4:
        a = a.mean(1)
    elif a.ndim == 3:
        a = a.mean(-1)
    return F.normalize(a.flatten(1), dim=1)


class ActivationRecorder:
    """Context manager recording the outputs of named sub-modules on every forward pass.

    >>> with ActivationRecorder(model, ["block1", "block2"]) as rec:
    ...     logits = model(x)
    ...     feats = rec.activations  # {"block1": Tensor, "block2": Tensor}
    """

    def __init__(self, model: nn.Module, layers: Iterable[str] | None = None, detach: bool = False):
        self.model = model
        self.layers = list(layers) if layers is not None else default_feature_layers(model)
        modules = dict(model.named_modules())
        missing = [name for name in self.layers if name not in modules]
        if missing:
            raise KeyError(f"model has no sub-modules {missing}; available: {list(modules)[:20]}")
        self._modules = [modules[name] for name in self.layers]
        self.detach = detach
        self.activations: dict[str, Tensor] = {}
        self._handles: list = []

    def __enter__(self) -> ActivationRecorder:
        for name, module in zip(self.layers, self._modules, strict=True):
            self._handles.append(module.register_forward_hook(self._hook(name)))
        return self

    def _hook(self, name: str):
        def record(_module, _inputs, output):
            self.activations[name] = output.detach() if self.detach else output

        return record

    def __exit__(self, *exc) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()
