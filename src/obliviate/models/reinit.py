"""Re-initialisation for the retrained reference, random teachers and shadow models: right or loud.

A model is re-initialised layer by layer, the way its library builds it:

- every module that owns a trainable parameter is reset by the model's own per-module init when
  the model has one (``model._init_weights(module)``, as Hugging Face models do), else by the
  module's ``reset_parameters`` (all of torch's layers define it; ``_reset_parameters``, torch's
  name in attention layers, counts too);
- a trainable parameter owned by a module without such a method (a bare ``nn.Parameter``: a
  temperature, a scale, a positional table) is re-drawn by a fixed rule, since its own init is
  unknown: a tensor with two or more dimensions like torch's default for a weight (Kaiming-uniform,
  ``a=sqrt(5)``); a scalar or vector uniformly around its current mean, as wide as its current
  spread and at least half its mean's magnitude, so a trained temperature of 3.0 becomes a random
  value in [1.5, 4.5]: positive and of the scale the model expects, without its trained value
  (an all-zero tensor, the usual init of a bias or a token, stays zero);
- frozen parameters (``requires_grad=False``) are kept exactly, and so are the BatchNorm running
  statistics of a frozen part, so a frozen pretrained backbone stays pretrained in the reference;
  the statistics of every other norm layer are reset (``keep_frozen=False`` resets everything).

Loud: a reset method that leaves one of its module's trainable parameters as it was raises
``ReinitError`` naming it (each such parameter is filled with NaN before the reset, so a reset that
skips it, or computes from it, shows).

The draws never touch the caller's random stream: bare parameters use a private generator, and
torch's ``reset_parameters`` (which draws from the global CPU generator) runs inside
``torch.random.fork_rng`` on a generator seeded from ``seed``, with the state restored after. A
model on an accelerator is re-initialised on the CPU and moved back, so one seed gives the same
weights on every device.
"""

from __future__ import annotations

import copy
import functools
import math

import torch
from torch import nn

RESET_METHODS = ("reset_parameters", "_reset_parameters")


class ReinitError(ValueError):
    """A model whose trainable parameters cannot all be re-initialised."""


def _reset_method(module: nn.Module):
    for name in RESET_METHODS:
        fn = getattr(module, name, None)
        if callable(fn):
            return fn
    return None


def _redraw_bare(param: torch.Tensor, gen: torch.Generator) -> None:
    """The rule for a trainable parameter whose owner has no reset method (see the module doc)."""
    with torch.no_grad():
        if param.ndim >= 2:
            nn.init.kaiming_uniform_(param, a=math.sqrt(5), generator=gen)
            return
        values = param.detach().double()
        mean = float(values.mean())
        spread = float(values.std()) if values.numel() > 1 else 0.0
        half = max(math.sqrt(3.0) * spread, abs(mean) / 2)
        draw = torch.rand(param.shape, generator=gen, dtype=torch.float64) * 2 - 1
        param.copy_((mean + half * draw).to(param.dtype))


def _in_frozen_part(model: nn.Module, path: str) -> bool:
    """True when the nearest module at or above ``path`` that owns parameters has them all frozen."""
    parts = path.split(".") if path else []
    for depth in range(len(parts), -1, -1):
        params = list(model.get_submodule(".".join(parts[:depth])).parameters())
        if params:
            return not any(p.requires_grad for p in params)
    return False


def _run_reset(reset, params: list[tuple[str, nn.Parameter]], where: str) -> list[tuple[str, nn.Parameter]]:
    """Fill ``params`` with NaN and call ``reset``; returns those it left untouched (still NaN)."""
    with torch.no_grad():
        for _, p in params:
            p.fill_(float("nan"))
    try:
        reset()
    except Exception as exc:  # a user's reset method: say which module, keep the reason
        raise ReinitError(f"cannot re-initialise {where}: {exc}") from None
    return [(n, p) for n, p in params if torch.isnan(p).any()]


def _reinit_in_place(model: nn.Module, seed: int) -> None:
    if not any(p.requires_grad for p in model.parameters()):
        raise ReinitError("the model has no trainable parameters, so there is nothing to re-initialise")
    frozen = {name: p.detach().clone() for name, p in model.named_parameters() if not p.requires_grad}
    model_init = getattr(model, "_init_weights", None)  # Hugging Face models' own per-module init
    gen = torch.Generator().manual_seed(seed)
    bare: list[nn.Parameter] = []
    done: set[int] = set()
    with torch.random.fork_rng(devices=[]):
        torch.default_generator.manual_seed(seed)
        for path, module in model.named_modules():
            own = [(n, p) for n, p in module.named_parameters(recurse=False) if p.requires_grad and id(p) not in done]
            if not own:
                continue
            where = path or "the model"
            values = {id(p): p.detach().clone() for _, p in own}
            left = own
            if callable(model_init):
                left = _run_reset(functools.partial(model_init, module), left, where)
            reset = _reset_method(module)
            if left and reset is not None:
                left = _run_reset(reset, left, where)
                if left:
                    name = f"{path}.{left[0][0]}" if path else left[0][0]
                    raise ReinitError(
                        f"cannot re-initialise parameter {name!r}: {type(module).__name__}.{reset.__name__} "
                        "does not reset it; make that method cover every parameter of the module"
                    )
            with torch.no_grad():
                for _, p in left:
                    p.copy_(values[id(p)])
            bare.extend(p for _, p in left)
            done.update(id(p) for _, p in own if all(p is not q for _, q in left))
    for p in bare:
        if id(p) not in done:
            _redraw_bare(p, gen)
            done.add(id(p))
    with torch.no_grad():
        params = dict(model.named_parameters())
        for name, value in frozen.items():
            params[name].copy_(value)
    for path, module in model.named_modules():
        if callable(getattr(module, "reset_running_stats", None)) and not _in_frozen_part(model, path):
            module.reset_running_stats()


def fresh_copy(model: nn.Module, seed: int | None = None, *, keep_frozen: bool = True) -> nn.Module:
    """A re-initialised copy of ``model`` (rules in the module doc); ``model`` is not changed.

    Same ``seed``, same weights; without one the draws come from a fresh random seed. The global
    random generators are left exactly as they were. ``keep_frozen=False`` re-initialises frozen
    parameters too (a wholly random network of the same architecture, as ZRF compares with); the
    copy's parameters keep their ``requires_grad`` flags either way.
    """
    if seed is None:
        seed = torch.Generator().seed()
    clone = copy.deepcopy(model)
    flags = {name: p.requires_grad for name, p in clone.named_parameters()}
    if not keep_frozen:
        clone.requires_grad_(True)
    places = {name: t.device for name, t in _tensors(clone)}
    off_cpu = any(d.type != "cpu" for d in places.values())
    if off_cpu:
        clone.cpu()
    _reinit_in_place(clone, seed)
    for name, p in clone.named_parameters():
        p.requires_grad_(flags[name])
    if off_cpu:
        for name, t in _tensors(clone):
            t.data = t.data.to(places[name])
    return clone


def _tensors(model: nn.Module):
    yield from model.named_parameters()
    yield from model.named_buffers()
