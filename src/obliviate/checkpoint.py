"""Model files: safetensors weights plus a JSON card saying how to rebuild and what produced them."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from obliviate.atomic import atomic_write, atomic_write_text
from obliviate.models import build_model, import_factory


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


def save_model(
    path: str | Path,
    model: nn.Module,
    card: dict | None = None,
    *,
    factory: str | None = None,
    factory_kwargs: dict | None = None,
) -> dict:
    """Write weights and card atomically. Returns the card written.

    The card gains ``architecture`` (how to rebuild the model) and ``sha256`` (of the weights
    file). A model made by ``build_model`` carries its own recipe; any other model needs
    ``factory``, the import path of a function that builds it (``"my_pkg.models:build"``),
    called with ``factory_kwargs`` (JSON values) on load. The factory is tried now, so a model that could
    not be loaded again is refused before anything is written.
    """
    path = Path(path)
    spec = getattr(model, "obliviate_spec", None)
    if factory is not None:
        spec = {"factory": factory, "kwargs": json.loads(json.dumps(factory_kwargs or {}))}
        _check_rebuilds(_rebuild(spec, f"factory {factory!r}"), model, factory)
    if spec is None:
        raise CheckpointError(
            "this model was not made by obliviate.models.build_model; pass factory='package.module:function' "
            "(a function that builds it) so it can be rebuilt on load"
        )
    tensors = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    atomic_write(path, lambda tmp: save_file(tensors, str(tmp)))
    full = {**(card or {}), "architecture": spec, "sha256": file_sha256(path)}
    atomic_write_text(card_path(path), json.dumps(full, indent=2, default=str))
    return full


def _rebuild(spec: dict, where: str) -> nn.Module:
    """A fresh model from a card's ``architecture``: a registered name or import path built with
    input shape and outputs, or a ``factory`` called with its keyword arguments."""
    try:
        if "factory" in spec and "input_shape" not in spec:
            model = import_factory(spec["factory"])(**spec.get("kwargs", {}))
            model.obliviate_spec = spec  # so an unlearned copy saves with the same recipe
            return model
        shape, outputs, kwargs = tuple(spec["input_shape"]), spec["num_outputs"], spec.get("kwargs", {})
        return build_model(spec["architecture"], shape, outputs, **kwargs)
    except (KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(f"{where}: cannot rebuild the model ({str(exc).strip(chr(39))})") from None


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
        return json.loads(cpath.read_text())
    except json.JSONDecodeError as exc:
        raise CheckpointError(f"{cpath}: corrupt model card ({exc})") from None


def load_model(path: str | Path) -> tuple[nn.Module, dict]:
    """Rebuild the model from its card and load the weights, checking the recorded hash."""
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"{path}: no such model file")
    card = load_card(path)
    if card.get("sha256") and file_sha256(path) != card["sha256"]:
        raise CheckpointError(f"{path}: weights do not match the sha256 in the card (file changed or corrupt)")
    model = _rebuild(card.get("architecture") or {}, str(path))
    try:
        state = load_file(str(path))
        model.load_state_dict(state)
    except (SafetensorError, RuntimeError, OSError) as exc:
        raise CheckpointError(f"{path}: cannot load weights ({str(exc).splitlines()[0]})") from None
    model.eval()
    return model, card
