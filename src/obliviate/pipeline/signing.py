"""The pipeline's secret: an HMAC-SHA256 key kept outside the home folder.

A hash chain alone proves nothing to someone who can rewrite the whole chain; a key they do
not hold does. The key signs every audit entry, every model card and the serving pointer, so
whoever can write to the home folder (but cannot read the key) cannot forge, re-hash or
replace them unnoticed. It is created at ``pipeline init`` with mode 0600, by default under
``~/.config/obliviate/keys`` (``OBLIVIATE_KEY_DIR`` moves that folder) and never inside the home.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
import uuid
from pathlib import Path

KEY_DIR_ENV = "OBLIVIATE_KEY_DIR"


class IntegrityError(ValueError):
    """The home folder does not match what was signed and recorded: something was altered or lost."""


def canonical(obj) -> str:
    """The one JSON text of ``obj`` that hashes and signatures are computed over."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), allow_nan=True)


def default_key_file() -> Path:
    folder = Path(os.environ.get(KEY_DIR_ENV) or Path.home() / ".config" / "obliviate" / "keys")
    return folder.expanduser().resolve() / f"{uuid.uuid4().hex}.key"


def create_key(path: Path, home: Path) -> bool:
    """Make a new key file (mode 0600) unless one exists; returns whether it was created."""
    path, home = path.expanduser().resolve(), home.expanduser().resolve()
    if path.is_relative_to(home):
        raise IntegrityError(f"the audit key {path} must live outside the pipeline home {home}")
    if path.exists():
        Signer.from_file(path)
        return False
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(secrets.token_hex(32) + "\n")
    return True


class Signer:
    """HMAC-SHA256 over canonical JSON; ``mac`` fields are excluded from what they sign."""

    def __init__(self, key: bytes):
        if len(key) < 16:
            raise IntegrityError("an audit key needs at least 16 bytes")
        self._key = key

    @classmethod
    def from_file(cls, path: str | Path) -> Signer:
        try:
            text = Path(path).read_text().strip()
        except OSError as exc:
            raise IntegrityError(f"cannot read the audit key {path} ({exc.strerror or exc})") from None
        return cls(text.encode())

    def sign(self, obj: dict) -> str:
        body = {k: v for k, v in obj.items() if k != "mac"}
        return hmac.new(self._key, canonical(body).encode(), hashlib.sha256).hexdigest()

    def seal(self, obj: dict) -> dict:
        return {**{k: v for k, v in obj.items() if k != "mac"}, "mac": self.sign(obj)}

    def valid(self, obj) -> bool:
        if not isinstance(obj, dict) or not isinstance(obj.get("mac"), str):
            return False
        return hmac.compare_digest(obj["mac"], self.sign(obj))
