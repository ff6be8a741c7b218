"""The model registry: numbered versions (safetensors + JSON card) and a ``serving`` pointer.

A version is written with ``obliviate.checkpoint.save_model`` (temporary file, fsync,
rename), so a crash never leaves a half-written model under a final name. The pointer
file ``SERVING.json`` is replaced the same way and only after the new version has been
re-read and its hash checked; it also keeps the history of promoted versions, so a
version on disk that was never promoted is recognisable as a leftover and can be removed.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from pathlib import Path

from torch import nn

from obliviate.atomic import atomic_write_text
from obliviate.checkpoint import CheckpointError, card_path, file_sha256, load_model, save_model

_VERSION = re.compile(r"^v(\d{4,})$")
POINTER = "SERVING.json"


class RegistryError(CheckpointError):
    """A version that is missing, corrupt, or cannot be promoted; the message names the version."""


class ModelRegistry:
    """Versions ``v0001``, ``v0002``, ... in one folder; the parent of a version is never touched."""

    def __init__(self, root: str | Path):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)

    def path(self, version: str) -> Path:
        if not _VERSION.match(version):
            raise RegistryError(f"{version!r} is not a model version (expected v0001, v0002, ...)")
        return self.root / f"{version}.safetensors"

    def versions(self) -> list[str]:
        """Every version with a weights file or a card on disk (promoted or not), in order."""
        found = {p.stem for p in self.root.iterdir() if p.suffix in {".safetensors", ".json"}}
        return sorted((v for v in found if _VERSION.match(v)), key=lambda v: int(v[1:]))

    def next_version(self) -> str:
        existing = self.versions()
        return f"v{(int(existing[-1][1:]) + 1 if existing else 1):04d}"

    def write(self, model: nn.Module, card: dict) -> str:
        """Store ``model`` as the next version (not yet serving); returns the version name."""
        version = self.next_version()
        full = {**card, "version": version, "created": datetime.now(UTC).isoformat(timespec="seconds")}
        save_model(self.path(version), model, full)
        return version

    def card(self, version: str) -> dict:
        path = card_path(self.path(version))
        try:
            return json.loads(path.read_text())
        except FileNotFoundError:
            raise RegistryError(f"model version {version}: no card {path.name}") from None
        except json.JSONDecodeError as exc:
            raise RegistryError(f"model version {version}: corrupt card {path.name} ({exc})") from None

    def load(self, version: str) -> tuple[nn.Module, dict]:
        """Load a version, checking its weights against the sha256 in its card."""
        try:
            return load_model(self.path(version))
        except CheckpointError as exc:
            raise RegistryError(f"model version {version} cannot be loaded: {exc}") from None

    def pointer(self) -> dict:
        path = self.root / POINTER
        if not path.exists():
            return {"version": None, "sha256": None, "history": []}
        try:
            return json.loads(path.read_text())
        except json.JSONDecodeError as exc:
            raise RegistryError(f"{path}: corrupt serving pointer ({exc})") from None

    def serving(self) -> str | None:
        return self.pointer()["version"]

    def history(self) -> list[str]:
        """Every version that was ever promoted, oldest first."""
        return list(self.pointer()["history"])

    def load_serving(self) -> tuple[str, nn.Module, dict]:
        version = self.serving()
        if version is None:
            raise RegistryError(f"{self.root}: no version is serving yet")
        model, card = self.load(version)
        return version, model, card

    def promote(self, version: str) -> None:
        """Make ``version`` the serving one; it must load and match its hash first."""
        self.load(version)
        ptr = self.pointer()
        history = ptr["history"] if version in ptr["history"] else [*ptr["history"], version]
        record = {
            "version": version,
            "sha256": file_sha256(self.path(version)),
            "promoted": datetime.now(UTC).isoformat(timespec="seconds"),
            "history": history,
        }
        atomic_write_text(self.root / POINTER, json.dumps(record, indent=2))

    def discard(self, version: str) -> None:
        """Delete a version that was never promoted (a leftover of an interrupted run)."""
        if version in self.history():
            raise RegistryError(f"model version {version} was promoted and is kept for the record")
        self.path(version).unlink(missing_ok=True)
        card_path(self.path(version)).unlink(missing_ok=True)

    def check(self) -> dict[str, str | None]:
        """Load every version; maps version -> None when it is sound, else the error text."""
        out: dict[str, str | None] = {}
        for version in self.versions():
            try:
                self.load(version)
                out[version] = None
            except RegistryError as exc:
                out[version] = str(exc)
        return out
