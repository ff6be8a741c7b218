"""The records a run leaves behind: ``RunLog`` (what one unlearning run did and cost) and
``Report`` (what an evaluation measured). Plain data with no dependency on methods or metrics,
so every layer can write and read them without importing the layers that make them."""

from __future__ import annotations

import json
import platform
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch

from obliviate.atomic import atomic_write_text


def package_version() -> str:
    """The installed Obliviate version ("unknown" when running from a tree that is not installed)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("obliviate")
    except PackageNotFoundError:
        return "unknown"


def versions() -> dict[str, str]:
    """The versions a result was made with, recorded beside it."""
    return {"obliviate": package_version(), "torch": torch.__version__, "python": platform.python_version()}


@dataclass
class RunLog:
    """What one unlearning run did and cost."""

    method: str
    config: dict
    seconds: float
    steps: int
    seed: int
    needs: list[str] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class ModelResult:
    metrics: dict[str, float]
    gaps: dict[str, float] = field(default_factory=dict)
    avg_gap: float | None = None
    seconds: float | None = None
    steps: int | None = None
    speedup: float | None = None


@dataclass
class Report:
    """The source of truth of an evaluation; tables and HTML are views of it."""

    task: dict
    reference: str | None
    models: dict[str, ModelResult]
    directions: dict[str, str]
    verdicts: dict[str, dict] = field(default_factory=dict)
    """Per model, the reference-free verdict (``Verdict.to_dict()``): what a user without a
    retrained model can know."""
    created: str = field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds"))
    versions: dict = field(default_factory=versions)

    def to_dict(self) -> dict:
        return asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, allow_nan=True)

    def save(self, path: str | Path) -> None:
        atomic_write_text(path, self.to_json())

    @classmethod
    def from_dict(cls, data: dict) -> Report:
        models = {k: ModelResult(**v) for k, v in data["models"].items()}
        return cls(**{**data, "models": models})

    @classmethod
    def load(cls, path: str | Path) -> Report:
        return cls.from_dict(json.loads(Path(path).read_text()))
