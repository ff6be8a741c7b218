"""A benchmark suite as written in YAML: data, model, recipe, scenarios x methods x seeds."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from obliviate.extras import need
from obliviate.forget import ForgetSpec
from obliviate.methods import get_method, make_config
from obliviate.metrics import METRICS
from obliviate.models import resolve_architecture
from obliviate.training import TrainConfig

RESERVED = ("original", "retrain")
"""Row names the runner uses for the models it trains itself."""


class MethodEntry(BaseModel):
    """A method and its config; ``label`` tells apart two configs of one method."""

    model_config = ConfigDict(extra="forbid")

    name: str
    label: str | None = None
    config: dict[str, Any] = Field(default_factory=dict)

    @property
    def key(self) -> str:
        return self.label or self.name

    @model_validator(mode="after")
    def _known(self) -> MethodEntry:
        make_config(self.name, **self.config)  # an unknown name (after installed plugins) is an error
        return self


class Scenario(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str
    spec: ForgetSpec


class Suite(BaseModel):
    """Validated suite. ``seeds`` vary the original's and the retrained model's training and
    each method's randomness; the train/test split is fixed by ``split_seed``."""

    model_config = ConfigDict(extra="forbid")

    name: str = "suite"
    data: str = "digits"
    kind: Literal["classification", "regression"] = "classification"
    target: str | None = None
    split_seed: int = 0
    architecture: str = "mlp"
    """A registered architecture (plugins register their own) or a factory 'package.module:function'."""
    model_kwargs: dict[str, Any] = Field(default_factory=dict)
    recipe: TrainConfig = Field(default_factory=TrainConfig)
    scenarios: list[Scenario] = Field(min_length=1)
    methods: list[MethodEntry] = Field(min_length=1)
    seeds: list[int] = Field(default_factory=lambda: [0], min_length=1)
    metrics: list[str] | None = None
    metric_options: dict[str, dict[str, Any]] = Field(default_factory=dict)

    @field_validator("methods", mode="before")
    @classmethod
    def _names(cls, value):
        return [{"name": v} if isinstance(v, str) else v for v in value or []]

    @model_validator(mode="after")
    def _consistent(self) -> Suite:
        try:
            resolve_architecture(self.architecture)
        except KeyError as exc:
            raise ValueError(exc.args[0]) from None
        keys = [m.key for m in self.methods]
        dup = sorted({k for k in keys if keys.count(k) > 1})
        if dup:
            raise ValueError(f"methods {dup} appear twice; give each config its own label")
        clash = sorted(set(keys) & set(RESERVED))
        if clash:
            raise ValueError(f"{clash}: the runner trains these itself; list only unlearning methods")
        names = [s.name for s in self.scenarios]
        if len(set(names)) != len(names):
            raise ValueError(f"scenario names must be unique, got {names}")
        if len(set(self.seeds)) != len(self.seeds):
            raise ValueError(f"seeds must be unique, got {self.seeds}")
        for m in self.methods:  # refuse now, not after the originals were trained
            method = get_method(m.name)
            if self.kind not in method.kinds:
                raise ValueError(f"method {m.key!r} serves {sorted(method.kinds)} tasks, not {self.kind}")
            for sc in self.scenarios:
                if sc.spec.scenario not in method.scenarios:
                    raise ValueError(
                        f"method {m.key!r} cannot serve scenario {sc.name!r} ({sc.spec.scenario}); "
                        f"it serves {', '.join(sorted(method.scenarios))}"
                    )
        unknown = [m for m in self.metrics or [] if m not in METRICS]
        if unknown:
            raise ValueError(f"unknown metrics {unknown}; known: {sorted(METRICS)}")
        return self

    @property
    def uses_lira(self) -> bool:
        """LiRA is off by default (it trains shadow models): only a suite that names it runs it."""
        return "lira" in (self.metrics or [])

    def config_hash(self) -> str:
        """Hash of the whole validated suite, recorded in results.json."""
        return stable_hash(self.model_dump(mode="json"))

    @classmethod
    def load(cls, path: str | Path) -> Suite:
        path = Path(path)
        if not path.exists():
            raise FileNotFoundError(f"{path}: no such suite file")
        yaml = need("yaml", "bench")
        try:
            raw = yaml.safe_load(path.read_text())
        except yaml.YAMLError as exc:
            raise ValueError(f"{path}: not valid YAML ({exc})") from None
        if not isinstance(raw, dict):
            raise ValueError(f"{path}: a suite is a YAML mapping with scenarios, methods and seeds")
        return cls.model_validate(raw)


def stable_hash(obj: Any, length: int = 16) -> str:
    """sha256 of the canonical JSON of ``obj``: equal content, equal key."""
    text = json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:length]
