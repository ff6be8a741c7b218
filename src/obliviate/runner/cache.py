"""On-disk cache of the models every method is compared with: the original and the retrained one.

A key is the hash of everything that determines the weights (data fingerprint, forget spec for
the retrained model, architecture, recipe and seed, and the code version), so a second run, or a
suite that shares a scenario, loads them instead of training again, and a changed Obliviate
never reuses what older code made.
"""

from __future__ import annotations

import functools
import hashlib
import inspect
from collections.abc import Callable
from pathlib import Path

from torch import nn

import obliviate
from obliviate.checkpoint import CheckpointError, load_model, save_model
from obliviate.records import package_version
from obliviate.runner.suite import stable_hash


@functools.cache
def code_version() -> str:
    """Obliviate's version and a hash of its source files (an edited checkout counts as new code)."""
    root = Path(obliviate.__file__).parent
    h = hashlib.sha256()
    for path in sorted(root.rglob("*.py")):
        h.update(path.relative_to(root).as_posix().encode())
        h.update(path.read_bytes())
    return f"{package_version()}+{h.hexdigest()[:12]}"


def source_hash(obj: object) -> str:
    """Hash of the file defining ``obj`` (a plugin's method lives outside Obliviate's sources)."""
    try:
        return hashlib.sha256(Path(inspect.getsourcefile(obj) or "").read_bytes()).hexdigest()[:12]
    except (OSError, TypeError):
        return "unknown"


class ModelCache:
    def __init__(self, root: str | Path):
        self.root = Path(root)

    def path(self, role: str, identity: dict) -> Path:
        return self.root / f"{role}-{stable_hash({**identity, 'code': code_version()})}.safetensors"

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
