"""Model zoo in plain PyTorch, built by name with input shape and number of outputs."""

from __future__ import annotations

import importlib
from collections.abc import Callable

import torch
from torch import nn

from obliviate.models.cnn import AllCNN, SmallCNN
from obliviate.models.features import ActivationRecorder, attention_map, default_feature_layers
from obliviate.models.mlp import MLP
from obliviate.models.reinit import ReinitError, fresh_copy
from obliviate.models.resnet import ResNet18
from obliviate.models.text import TextTransformer

ARCHITECTURES: dict[str, Callable[..., nn.Module]] = {
    "mlp": MLP,
    "cnn": SmallCNN,
    "allcnn": AllCNN,
    "resnet18": ResNet18,
    "text-transformer": TextTransformer,
}

__all__ = [
    "ARCHITECTURES",
    "ActivationRecorder",
    "AllCNN",
    "MLP",
    "ReinitError",
    "ResNet18",
    "SmallCNN",
    "TextTransformer",
    "attention_map",
    "build_model",
    "default_feature_layers",
    "fresh_copy",
    "import_factory",
    "register_architecture",
    "resolve_architecture",
]


def register_architecture(name: str, factory: Callable[..., nn.Module], *, replace: bool = False) -> None:
    """Make ``factory(input_shape, num_outputs, **kwargs)`` buildable (and loadable) by name.

    A name already taken by another factory is refused unless ``replace=True``: a plugin must not
    silently change what a saved model's card rebuilds.
    """
    if not replace and ARCHITECTURES.get(name, factory) is not factory:
        raise ValueError(f"architecture {name!r} is already registered; pass replace=True to replace it")
    ARCHITECTURES[name] = factory


def import_factory(path: str) -> Callable[..., nn.Module]:
    """The callable named by an import path ``"package.module:function"`` (imported now)."""
    module_name, sep, attr = path.partition(":")
    if not sep or not module_name or not attr:
        raise ValueError(f"model factory {path!r} is not an import path of the form 'package.module:function'")
    try:
        target = importlib.import_module(module_name)
        for part in attr.split("."):
            target = getattr(target, part)
    except (ImportError, AttributeError) as exc:
        raise ValueError(f"cannot import model factory {path!r}: {exc}") from None
    if not callable(target):
        raise ValueError(f"model factory {path!r} is not callable")
    return target


def resolve_architecture(name: str) -> Callable[..., nn.Module]:
    """A registered architecture, or a factory named by import path (``"my_pkg.models:build"``)."""
    if ":" in name:
        return import_factory(name)
    if name not in ARCHITECTURES:
        from obliviate.plugins import load_plugins

        load_plugins()
    if name in ARCHITECTURES:
        return ARCHITECTURES[name]
    raise KeyError(f"unknown model {name!r}; choose from {sorted(ARCHITECTURES)} or give 'package.module:function'")


def build_model(
    name: str, input_shape: tuple[int, ...], num_outputs: int, *, seed: int | None = None, **kwargs
) -> nn.Module:
    """Build a registered architecture, or call the factory at import path ``name`` the same way
    (``factory(input_shape, num_outputs, **kwargs)``); the spec is remembered for checkpoints.

    With ``seed`` the initial weights depend on it alone, not on the global generator.
    """
    factory = resolve_architecture(name)
    if seed is None:
        model = factory(tuple(input_shape), num_outputs, **kwargs)
    else:
        with torch.random.fork_rng(devices=[]):
            torch.default_generator.manual_seed(seed)
            model = factory(tuple(input_shape), num_outputs, **kwargs)
    model.obliviate_spec = {
        "architecture": name,
        "input_shape": list(input_shape),
        "num_outputs": num_outputs,
        "kwargs": kwargs,
    }
    return model


from obliviate.models import forecasting  # noqa: E402,F401  (registers "lstm" and "scaled")
