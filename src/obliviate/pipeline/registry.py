"""The model registry: numbered versions (safetensors + JSON card) and a ``serving`` pointer.

A version is written with ``obliviate.checkpoint.save_model`` (temporary file, fsync,
rename), so a crash never leaves a half-written model under a final name. The pointer
file ``SERVING.json`` is replaced the same way and only after the new version has been
re-read and its hash checked; it also keeps the history of promoted versions, so a
version on disk that was never promoted is recognisable as a leftover and can be removed.

With a ``Signer`` (a pipeline always has one) every card and the pointer carry an HMAC, and
loading checks pointer, card and weights against each other: the pointer's signature, that
it names the last promoted version, the card's signature and version name, and that the
weights' sha256 is the one both the card and the pointer recorded.

A causal-LM registry (``lm=True``) holds each version as a Hugging Face directory ``vNNNN/``
beside the same card, hashed as a whole (``obliviate.pipeline.lm``); everything else is shared.
"""

from __future__ import annotations

import json
import re
import shutil
from datetime import UTC, datetime
from pathlib import Path

from torch import nn

from obliviate.atomic import atomic_write_text
from obliviate.checkpoint import CheckpointError, card_path, file_sha256, load_model, save_model
from obliviate.data import DataError
from obliviate.pipeline import lm as causal
from obliviate.pipeline.signing import IntegrityError, Signer

_VERSION = re.compile(r"^v(\d{4,})$")
POINTER = "SERVING.json"


class RegistryError(CheckpointError):
    """A version that is missing, corrupt, or cannot be promoted; the message names the version."""


class ModelRegistry:
    """Versions ``v0001``, ``v0002``, ... in one folder; the parent of a version is never touched."""

    def __init__(self, root: str | Path, signer: Signer | None = None, lm: bool = False):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.signer = signer
        self.lm = lm

    def path(self, version: str) -> Path:
        """The version's weights file, or its model directory in a causal-LM registry."""
        if not _VERSION.match(version):
            raise RegistryError(f"{version!r} is not a model version (expected v0001, v0002, ...)")
        return self.root / (version if self.lm else f"{version}.safetensors")

    def versions(self) -> list[str]:
        """Every version with weights (file or directory) or a card on disk (promoted or not), in order."""
        found = {p.stem for p in self.root.iterdir() if p.suffix in {".safetensors", ".json"} or p.is_dir()}
        return sorted((v for v in found if _VERSION.match(v)), key=lambda v: int(v[1:]))

    def sha256(self, version: str) -> str:
        """The hash cards, pointer and audit records name: of the weights file, or of the whole directory."""
        path = self.path(version)
        return causal.dir_sha256(path) if self.lm else file_sha256(path)

    def next_version(self) -> str:
        existing = self.versions()
        return f"v{(int(existing[-1][1:]) + 1 if existing else 1):04d}"

    def write(self, model: nn.Module | causal.CausalLM, card: dict) -> str:
        """Store ``model`` as the next version (not yet serving); returns the version name.

        A causal LM's directory is renamed into place before its card is written; a crash in
        between leaves a version without a card, which recovery deletes as never promoted."""
        version = self.next_version()
        full = {**card, "version": version, "created": datetime.now(UTC).isoformat(timespec="seconds")}
        if not self.lm:
            save_model(self.path(version), model, full, seal=self.signer.seal if self.signer else None)
            return version
        digest = causal.save_version(self.path(version), model)
        full = {**full, "architecture": {"causal_lm": model.model.config.model_type}, "sha256": digest}
        full = json.loads(json.dumps(full, default=str, allow_nan=True))
        full = self.signer.seal(full) if self.signer else full
        atomic_write_text(card_path(self.path(version)), json.dumps(full, indent=2, allow_nan=True))
        return version

    def card(self, version: str) -> dict:
        path = card_path(self.path(version))
        try:
            card = json.loads(path.read_text())
        except FileNotFoundError:
            raise RegistryError(f"model version {version}: no card {path.name}") from None
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise RegistryError(f"model version {version}: corrupt card {path.name} ({exc})") from None
        if not isinstance(card, dict):
            raise RegistryError(f"model version {version}: card {path.name} is not a JSON object")
        return card

    def verify_card(self, version: str, card: dict) -> None:
        """Raise ``IntegrityError`` unless ``card`` is signed and belongs to ``version``."""
        if self.signer is not None and not self.signer.valid(card):
            raise IntegrityError(f"model version {version}: card is not validly signed (edited or replaced)")
        if self.signer is not None and card.get("version") != version:
            raise IntegrityError(f"model version {version}: card belongs to version {card.get('version')!r}")

    def load(self, version: str) -> tuple[nn.Module | causal.CausalLM, dict]:
        """Load a version, checking its card's signature and its weights against the card's sha256."""
        self.verify_card(version, self.card(version))
        if self.lm:
            return self._load_lm(version)
        try:
            model, card = load_model(self.path(version))
        except CheckpointError as exc:
            raise RegistryError(f"model version {version} cannot be loaded: {exc}") from None
        self.verify_card(version, card)
        return model, card

    def _load_lm(self, version: str) -> tuple[causal.CausalLM, dict]:
        """The directory is hashed before anything in it is read by ``transformers``."""
        card, path = self.card(version), self.path(version)
        if not path.is_dir():
            raise RegistryError(f"model version {version} cannot be loaded: no model directory {path.name}/")
        if causal.dir_sha256(path) != card.get("sha256"):
            raise RegistryError(f"model version {version} cannot be loaded: its files do not match the card's sha256")
        try:
            return causal.load_version(path), card
        except DataError as exc:
            raise RegistryError(f"model version {version} cannot be loaded: {exc}") from None

    def pointer(self) -> dict:
        path = self.root / POINTER
        if not path.exists():
            return {"version": None, "sha256": None, "history": []}
        try:
            ptr = json.loads(path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise RegistryError(f"{path}: corrupt serving pointer ({exc})") from None
        if not isinstance(ptr, dict) or not isinstance(ptr.get("history"), list) or "version" not in ptr:
            raise RegistryError(f"{path}: not a serving pointer")
        return ptr

    def verified_pointer(self) -> dict:
        """The pointer, checked: signed, naming the last promoted version, and present once
        any version is (a missing pointer would otherwise make every version look unpromoted)."""
        ptr = self.pointer()
        path = self.root / POINTER
        if ptr["version"] is None:
            if self.signer is not None and self.versions():
                raise IntegrityError(f"{path} is missing but model versions exist")
            return ptr
        if self.signer is not None and not self.signer.valid(ptr):
            raise IntegrityError(f"{path} is not validly signed (edited or replaced)")
        if not ptr["history"] or ptr["history"][-1] != ptr["version"]:
            raise IntegrityError(f"{path} serves {ptr['version']} but the last promoted version is not that one")
        return ptr

    def serving(self) -> str | None:
        return self.pointer()["version"]

    def history(self) -> list[str]:
        """Every version that was ever promoted, oldest first."""
        return list(self.pointer()["history"])

    def load_serving(self) -> tuple[str, nn.Module, dict]:
        """The serving model; its weights must hash to what the pointer and its card recorded."""
        ptr = self.verified_pointer()
        version = ptr["version"]
        if version is None:
            raise RegistryError(f"{self.root}: no version is serving yet")
        model, card = self.load(version)
        if card.get("sha256") != ptr.get("sha256"):
            raise IntegrityError(f"model version {version}: weights are not the ones the serving pointer recorded")
        return version, model, card

    def promote(self, version: str) -> None:
        """Make ``version`` the serving one; it must load and match its hash first."""
        self.load(version)
        first = not (self.root / POINTER).exists()
        ptr = self.pointer() if first else self.verified_pointer()
        history = ptr["history"] if version in ptr["history"] else [*ptr["history"], version]
        record = {
            "version": version,
            "sha256": self.sha256(version),
            "promoted": datetime.now(UTC).isoformat(timespec="seconds"),
            "history": history,
        }
        if self.signer is not None:
            record = self.signer.seal(record)
        atomic_write_text(self.root / POINTER, json.dumps(record, indent=2))

    def discard(self, version: str) -> None:
        """Delete a version that was never promoted (a leftover of an interrupted run)."""
        if version in self.history():
            raise RegistryError(f"model version {version} was promoted and is kept for the record")
        path = self.path(version)
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink(missing_ok=True)
        card_path(self.path(version)).unlink(missing_ok=True)

    def check(self) -> dict[str, str | None]:
        """Load every version; maps version -> None when it is sound, else the error text."""
        out: dict[str, str | None] = {}
        for version in self.versions():
            try:
                self.load(version)
                out[version] = None
            except (RegistryError, IntegrityError) as exc:
                out[version] = str(exc)
        return out
