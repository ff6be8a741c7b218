"""Model zoo in plain PyTorch, built by name with input shape and number of outputs."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from obliviate.models.cnn import AllCNN, SmallCNN
from obliviate.models.features import ActivationRecorder, default_feature_layers
from obliviate.models.mlp import MLP
from obliviate.models.resnet import ResNet18

ARCHITECTURES: dict[str, Callable[..., nn.Module]] = {
    "mlp": MLP,
    "cnn": SmallCNN,
    "allcnn": AllCNN,
    "resnet18": ResNet18,
}

__all__ = [
    "ARCHITECTURES",
    "ActivationRecorder",
    "AllCNN",
    "MLP",
    "ResNet18",
    "SmallCNN",
    "build_model",
    "default_feature_layers",
    "fresh_copy",
    "register_architecture",
]


def register_architecture(name: str, factory: Callable[..., nn.Module]) -> None:
    """Make ``factory(input_shape, num_outputs, **kwargs)`` buildable (and loadable) by name."""
    ARCHITECTURES[name] = factory


def build_model(
    name: str, input_shape: tuple[int, ...], num_outputs: int, *, seed: int | None = None, **kwargs
) -> nn.Module:
    """Build a registered architecture; the spec is remembered for checkpoints.

    With ``seed`` the initial weights depend on it alone, not on the global generator.
    """
    if name not in ARCHITECTURES:
        raise KeyError(f"unknown model {name!r}; choose from {sorted(ARCHITECTURES)}")
    if seed is None:
        model = ARCHITECTURES[name](tuple(input_shape), num_outputs, **kwargs)
    else:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = ARCHITECTURES[name](tuple(input_shape), num_outputs, **kwargs)
    model.obliviate_spec = {
        "architecture": name,
        "input_shape": list(input_shape),
        "num_outputs": num_outputs,
        "kwargs": kwargs,
    }
    return model


def fresh_copy(model: nn.Module, seed: int | None = None) -> nn.Module:
    """A copy of ``model`` with every layer re-initialised (works for any module whose layers
    define ``reset_parameters``, as all of torch's do); BatchNorm statistics are reset too."""
    import copy

    clone = copy.deepcopy(model)
    if seed is not None:
        torch.manual_seed(seed)
    for module in clone.modules():
        if hasattr(module, "reset_parameters"):
            module.reset_parameters()
        if hasattr(module, "reset_running_stats"):
            module.reset_running_stats()
    return clone


from obliviate.models import forecasting  # noqa: E402,F401  (registers "lstm" and "scaled")
