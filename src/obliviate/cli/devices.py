"""``--device``: which device a command runs its models on."""

from __future__ import annotations

from typing import TYPE_CHECKING

import typer

if TYPE_CHECKING:
    import torch

DeviceOpt = typer.Option("auto", "--device", help="cpu, cuda, cuda:N, mps, or auto (the GPU when there is one)")


def resolve_device(name: str) -> torch.device:
    """``auto`` is the GPU when there is one, else the CPU; anything else must be usable here."""
    import torch  # here, not at the top: ``obliviate --help`` must not wait for torch

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ValueError(f"unknown device {name!r}; use cpu, cuda, cuda:N, mps or auto") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {name!r} is not available: this torch sees no CUDA GPU")
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise ValueError(f"device {name!r} is not available: {torch.cuda.device_count()} CUDA GPU(s) here")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError(f"device {name!r} is not available on this machine")
    return device
