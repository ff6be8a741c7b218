"""Regression heads: an LSTM for windowed series, and a target scale that survives re-initialisation.

``scaled`` wraps any registered architecture so it predicts ``mean + std * net(x)`` with the
training targets' mean and std held as buffers. Targets stay in their own units (years, GW,
ppm) for every metric, yet a freshly initialised net starts at the mean with unit-scale
outputs; because the scale is a buffer, ``fresh_copy`` (retraining, Blindspot's proxy) keeps it.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from obliviate.data import Dataset
from obliviate.models import ARCHITECTURES, register_architecture


class LSTMForecaster(nn.Module):
    """LSTM over a (time, features) window; the last step's hidden state feeds a linear head."""

    def __init__(self, input_shape: tuple[int, ...], num_outputs: int, hidden: int = 32, layers: int = 1):
        super().__init__()
        if len(input_shape) != 2:
            raise ValueError(f"the LSTM expects (time, features) inputs, got shape {tuple(input_shape)}")
        self.lstm = nn.LSTM(input_shape[1], hidden, num_layers=layers, batch_first=True)
        self.head = nn.Linear(hidden, num_outputs)

    def forward(self, x: Tensor) -> Tensor:
        out, _ = self.lstm(x)
        return self.head(out[:, -1])


class TargetScaled(nn.Module):
    """``mean + std * net(x)``: the net learns standardised targets, callers see original units."""

    def __init__(self, net: nn.Module, target_mean: float = 0.0, target_std: float = 1.0):
        super().__init__()
        if not target_std > 0:
            raise ValueError(f"target_std must be positive, got {target_std}")
        self.net = net
        self.register_buffer("target_mean", torch.tensor(float(target_mean)))
        self.register_buffer("target_std", torch.tensor(float(target_std)))

    def forward(self, x: Tensor) -> Tensor:
        return self.target_mean + self.target_std * self.net(x)


def scaled(
    input_shape: tuple[int, ...],
    num_outputs: int,
    base: str = "mlp",
    target_mean: float = 0.0,
    target_std: float = 1.0,
    **kwargs,
) -> TargetScaled:
    """Architecture ``scaled``: the registered ``base`` architecture behind a target scale."""
    if base not in ARCHITECTURES or base == "scaled":
        raise KeyError(f"unknown base model {base!r} for 'scaled'; choose from {sorted(ARCHITECTURES)}")
    return TargetScaled(ARCHITECTURES[base](input_shape, num_outputs, **kwargs), target_mean, target_std)


def target_scale(data: Dataset) -> dict[str, float]:
    """``target_mean`` and ``target_std`` of a regression data set, as keyword arguments for ``scaled``."""
    if data.kind != "regression":
        raise ValueError("target scaling applies to regression data only")
    std = float(data.y.std()) if len(data) > 1 else 1.0
    return {"target_mean": float(data.y.mean()), "target_std": std if std > 0 else 1.0}


register_architecture("lstm", LSTMForecaster)
register_architecture("scaled", scaled)
