"""Model files: safetensors weights plus a JSON card saying how to rebuild and what produced them.

Weights and card are one unit: both are written to temporary files and renamed under a lock
beside the output (so two writers of the same path cannot interleave into one's weights with
the other's card), and the card records the weights' sha256, which loading checks.
"""

from __future__ import annotations

import hashlib
import json
import math
import warnings
from collections.abc import Callable
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from obliviate.atomic import atomic_write_many, locked
from obliviate.models import build_model, import_factory

MAX_PARAMETERS = 2_000_000_000
"""A card describing a larger model is refused before anything is allocated (8 GB of float32)."""


class CheckpointError(ValueError):
    """A model file that is missing, corrupt, or does not match its card."""


def card_path(path: str | Path) -> Path:
    return Path(path).with_suffix(".json")


def file_sha256(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def check_output(out: str | Path, source: str | Path) -> None:
    """Refuse an output whose weights or card would land on the input's weights or card."""
    outs = {Path(out).resolve(), card_path(out).resolve()}
    ins = {Path(source).resolve(), card_path(source).resolve()}
    if outs & ins:
        raise CheckpointError(
            f"--out {out} would overwrite the input model {source} or its card; the original is never overwritten"
        )


def save_model(
    path: str | Path,
    model: nn.Module,
    card: dict | None = None,
    seal: Callable[[dict], dict] | None = None,
    *,
    factory: str | None = None,
    factory_kwargs: dict | None = None,
) -> dict:
    """Write weights and card as one unit, under a lock. Returns the card written.

    The card gains ``architecture`` (how to rebuild the model) and ``sha256`` (of the weights
    file); ``seal`` has the last word on it (the pipeline signs cards). A model made by
    ``build_model`` carries its own recipe; any other model needs ``factory``, the import path of
    a function that builds it (``"my_pkg.models:build"``), called with ``factory_kwargs`` (JSON
    values) on load. The factory is tried now, so a model that could not be loaded again is
    refused before anything is written.
    """
    path = Path(path)
    if card_path(path) == path:
        raise CheckpointError(f"{path}: a model file cannot end in .json (that name is its card's)")
    spec = getattr(model, "obliviate_spec", None)
    if factory is not None:
        spec = {"factory": factory, "kwargs": json.loads(json.dumps(factory_kwargs or {}))}
        _check_rebuilds(_build(f"factory {factory!r}", {"architecture": spec}), model, factory)
    if spec is None:
        raise CheckpointError(
            "this model was not made by obliviate.models.build_model; pass factory='package.module:function' "
            "(a function that builds it) so it can be rebuilt on load"
        )
    tensors = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    full: dict = {}

    def write_weights(tmp: Path) -> None:
        save_file(tensors, str(tmp))
        content = {**(card or {}), "architecture": spec, "sha256": file_sha256(tmp)}
        full.update(json.loads(json.dumps(content, default=str, allow_nan=True)))
        if seal is not None:
            full.update(seal(dict(full)))

    def write_card(tmp: Path) -> None:
        tmp.write_text(json.dumps(full, indent=2, allow_nan=True))

    with locked(path):
        atomic_write_many({path: write_weights, card_path(path): write_card})
    return full


def _check_rebuilds(fresh: nn.Module, model: nn.Module, factory: str) -> None:
    theirs = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    ours = {k: tuple(v.shape) for k, v in fresh.state_dict().items()}
    if theirs != ours:
        diff = sorted(set(theirs.items()) ^ set(ours.items()))[:3]
        raise CheckpointError(f"factory {factory!r} builds a different model than the one saved (e.g. {diff})")


def load_card(path: str | Path) -> dict:
    cpath = card_path(path)
    if not cpath.exists():
        raise CheckpointError(f"{path}: no model card {cpath.name} beside the weights")
    try:
        card = json.loads(cpath.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"{cpath}: corrupt model card ({exc})") from None
    if not isinstance(card, dict):
        raise CheckpointError(f"{cpath}: a model card is a JSON object, not {type(card).__name__}")
    return card


def build_checked(name: str, input_shape: tuple[int, ...], num_outputs: int, **kwargs) -> nn.Module:
    """``build_model``, after building it on the meta device (no memory) to check its size, so
    a forged card or a typo in ``hidden`` cannot make us try to allocate terabytes."""
    try:
        with torch.device("meta"):
            skeleton = build_model(name, input_shape, num_outputs, **kwargs)
    except (RuntimeError, NotImplementedError):  # computes with real values while constructed: no dry run
        return build_model(name, input_shape, num_outputs, **kwargs)
    size = sum(math.prod(t.shape) for t in skeleton.state_dict().values())
    if size > MAX_PARAMETERS:
        raise CheckpointError(f"model {name} with {kwargs} would hold {size:,} values (more than {MAX_PARAMETERS:,})")
    return build_model(name, input_shape, num_outputs, **kwargs)


def _build(where: str | Path, card: dict) -> nn.Module:
    """A fresh model from a card's ``architecture``: a registered name or import path built with
    input shape and outputs (size-checked first), or a ``factory`` called with its keyword arguments."""
    spec = card.get("architecture")
    try:
        if "factory" in spec and "input_shape" not in spec:
            model = import_factory(spec["factory"])(**dict(spec.get("kwargs") or {}))
            model.obliviate_spec = spec  # so an unlearned copy saves with the same recipe
            return model
        args = (spec["architecture"], tuple(int(d) for d in spec["input_shape"]), int(spec["num_outputs"]))
        return build_checked(*args, **dict(spec.get("kwargs") or {}))
    except CheckpointError as exc:
        raise CheckpointError(f"{where}: {exc}") from None
    except (KeyError, TypeError, ValueError, RuntimeError, OverflowError) as exc:
        reason = str(exc).strip("'")
        raise CheckpointError(f"{where}: cannot rebuild the model from the card's architecture ({reason})") from None


def load_model(path: str | Path) -> tuple[nn.Module, dict]:
    """Rebuild the model from its card and load the weights, checking the recorded hash.

    Weights stored in another floating type (float64, say) are converted to the model's with
    a warning: the model computes in its own precision either way, so the values it serves
    are the converted ones.
    """
    path = Path(path)
    with locked(path, shared=True):
        if not path.exists():
            raise CheckpointError(f"{path}: no such model file")
        card = load_card(path)
        if card.get("sha256") and file_sha256(path) != card["sha256"]:
            raise CheckpointError(f"{path}: weights do not match the sha256 in the card (file changed or corrupt)")
        model = _build(path, card)
        try:
            state = load_file(str(path))
        except (SafetensorError, OSError) as exc:
            raise CheckpointError(f"{path}: cannot load weights ({str(exc).splitlines()[0]})") from None
    own = model.state_dict()
    converted = sorted({str(t.dtype) for k, t in state.items() if t.dtype != own[k].dtype})
    if converted:
        kinds = ", ".join(converted)
        warnings.warn(f"{path}: weights stored as {kinds} were converted to the model's types", stacklevel=2)
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        raise CheckpointError(f"{path}: cannot load weights ({str(exc).splitlines()[0]})") from None
    model.eval()
    return model, card
