"""On-disk cache of the models every method is compared with: the original and the retrained one.

A key is the hash of everything that determines the weights (data fingerprint, forget spec for
the retrained model, architecture, recipe and seed), so a second run, or a suite that shares a
scenario, loads them instead of training again.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from torch import nn

from obliviate.checkpoint import CheckpointError, load_model, save_model
from obliviate.runner.suite import stable_hash


class ModelCache:
    def __init__(self, root: str | Path):
        self.root = Path(root)

    def path(self, role: str, identity: dict) -> Path:
        return self.root / f"{role}-{stable_hash(identity)}.safetensors"

    def get_or_make(
        self, role: str, identity: dict, make: Callable[[], tuple[nn.Module, dict]]
    ) -> tuple[nn.Module, dict]:
        """Load the model stored under ``identity``, or build it with ``make()`` (model, card)
        and store it. A corrupt entry is rebuilt rather than trusted."""
        path = self.path(role, identity)
        if path.exists():
            try:
                model, card = load_model(path)
                if card.get("identity") == identity:
                    return model, card
            except CheckpointError:
                pass
        model, card = make()
        self.root.mkdir(parents=True, exist_ok=True)
        card = save_model(path, model, {**card, "identity": identity, "role": role})
        return model, card
