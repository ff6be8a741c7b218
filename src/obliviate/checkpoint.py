"""Model files: safetensors weights plus a JSON card saying how to rebuild and what produced them."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from obliviate.atomic import atomic_write, atomic_write_text
from obliviate.models import build_model


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


def save_model(path: str | Path, model: nn.Module, card: dict | None = None) -> dict:
    """Write weights and card atomically; refuses models not built by ``build_model``.

    The card gains ``architecture`` (to rebuild) and ``sha256`` (of the weights file).
    Returns the card written.
    """
    path = Path(path)
    spec = getattr(model, "obliviate_spec", None)
    if spec is None:
        raise CheckpointError("only models made by obliviate.models.build_model can be saved with a card")
    tensors = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    atomic_write(path, lambda tmp: save_file(tensors, str(tmp)))
    full = {**(card or {}), "architecture": spec, "sha256": file_sha256(path)}
    atomic_write_text(card_path(path), json.dumps(full, indent=2, default=str))
    return full


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
    spec = card.get("architecture") or {}
    try:
        model = build_model(
            spec["architecture"], tuple(spec["input_shape"]), spec["num_outputs"], **spec.get("kwargs", {})
        )
    except (KeyError, TypeError) as exc:
        raise CheckpointError(f"{path}: card does not describe a known architecture ({exc})") from None
    try:
        state = load_file(str(path))
        model.load_state_dict(state)
    except (SafetensorError, RuntimeError, OSError) as exc:
        raise CheckpointError(f"{path}: cannot load weights ({str(exc).splitlines()[0]})") from None
    model.eval()
    return model, card
