"""The model adapter: the one way any model is called, so any ``nn.Module`` works.

- ``forward(model, x)`` calls ``model(x)``, or ``model(**x)`` for a dict batch (so Hugging Face
  models get ``input_ids`` and ``attention_mask``), and returns logits via ``logits``.
- ``logits(out)`` reads logits off what a model returns: a tensor, the first element of a
  tuple or list, ``out["logits"]`` of a dict, or ``out.logits`` (a Hugging Face ``ModelOutput``).
- ``using_output(fn)``: inside the block ``fn(out)`` replaces ``logits`` for every call
  (``unlearn(..., output=fn)`` and ``evaluate(..., output=fn)`` set it for models whose outputs
  are none of the above).
- ``predict(model, data)`` is the per-example outputs of a model on a ``Dataset`` (or a tensor
  of inputs), computed batch by batch on the model's device and returned on the CPU.

Inputs are passed with their dtype: token ids stay integers.
"""

from __future__ import annotations

import contextvars
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import torch
from torch import Tensor, nn

from obliviate.data import Dataset
from obliviate.data.loader import iterate, model_input, to_device

OutputFn = Callable[[Any], Tensor]

_OUTPUT: contextvars.ContextVar[OutputFn | None] = contextvars.ContextVar("obliviate_output", default=None)


class OutputError(TypeError):
    """A model output from which no logits can be read (pass ``output=`` to say how)."""


def logits(out: Any) -> Tensor:
    """Logits from a model's return value (tensor, tuple/list, dict with 'logits', ModelOutput)."""
    if isinstance(out, Tensor):
        return out
    if isinstance(out, Mapping):
        if "logits" in out:
            return out["logits"]
        raise OutputError(f"the model returned a dict without 'logits' (keys: {sorted(out)[:5]}); pass output=")
    value = getattr(out, "logits", None)
    if isinstance(value, Tensor):
        return value
    if isinstance(out, (tuple, list)) and out and isinstance(out[0], Tensor):
        return out[0]
    raise OutputError(f"cannot read logits from a model output of type {type(out).__name__}; pass output=")


@contextmanager
def using_output(fn: OutputFn | None) -> Iterator[None]:
    """Read logits with ``fn`` inside the block (None: the default rule, ``logits``)."""
    token = _OUTPUT.set(fn)
    try:
        yield
    finally:
        _OUTPUT.reset(token)


def forward(model: nn.Module, x: Tensor | Mapping[str, Tensor], output: OutputFn | None = None) -> Tensor:
    """Logits of ``model`` on a batch ``x`` (a dict batch is passed as keyword arguments)."""
    out = model(**x) if isinstance(x, Mapping) else model(x)
    read = output or _OUTPUT.get() or logits
    return read(out)


def model_device(model: nn.Module) -> torch.device:
    """Where the model's parameters (else buffers) live; the CPU for a model with neither."""
    for tensor in model.parameters():
        return tensor.device
    for tensor in model.buffers():
        return tensor.device
    return torch.device("cpu")


@torch.no_grad()
def predict(
    model: nn.Module,
    data: Dataset | Tensor,
    batch_size: int = 1024,
    device: str | torch.device | None = None,
    output: OutputFn | None = None,
) -> Tensor:
    """Outputs of ``model`` on every row of ``data`` in eval mode, as float32 on the CPU.

    Runs where the model lives; with ``device`` the model is moved there first, so model and
    inputs always meet. The model's train/eval mode is restored."""
    if device is not None:
        model.to(device)
    device = model_device(model)
    was_training = model.training
    model.eval()
    try:
        if isinstance(data, Dataset):
            outs = [forward(model, b.x, output).float().cpu() for b in iterate(data, batch_size, device=device)]
        else:
            outs = [
                forward(model, to_device(model_input(data[i : i + batch_size]), device), output).float().cpu()
                for i in range(0, len(data), batch_size)
            ]
    finally:
        model.train(was_training)
    if not outs:
        return torch.zeros((0,), dtype=torch.float32)
    return torch.cat(outs)
