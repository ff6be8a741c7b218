"""The pipeline's configuration: which data and model it serves, how it forgets, and the gates."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from obliviate.methods import make_config
from obliviate.pipeline.gates import DEFAULT_GATES, Gate
from obliviate.training import TrainConfig


class DataSource(BaseModel):
    """A named data set; requests refer to its training rows by position in this split."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=200)
    source: str
    split_seed: int = 0
    test_fraction: float = Field(0.2, gt=0, lt=1)
    kind: Literal["classification", "regression"] = "classification"
    target: str | None = None
    key: str | None = None
    features: list[str] | None = None


class SisaSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    shards: int = Field(4, ge=1)
    slices: int = Field(4, ge=1)
    aggregation: Literal["mean", "vote"] = "mean"


class PipelineConfig(BaseModel):
    """Everything ``obliviate pipeline process`` needs, stored as ``pipeline.json`` in the home folder.

    ``mode="approximate"`` runs ``method`` (any registered method) on the serving model;
    ``mode="exact"`` serves a SISA ensemble and forgets by retraining only affected shards.
    ``batch_size`` caps the requests served by one unlearning run (1 turns batching off).
    """

    model_config = ConfigDict(extra="forbid")

    dataset: DataSource
    architecture: str = "mlp"
    architecture_kwargs: dict = Field(default_factory=dict)
    recipe: TrainConfig = Field(default_factory=TrainConfig)
    mode: Literal["approximate", "exact"] = "approximate"
    method: str = "finetune"
    method_config: dict = Field(default_factory=dict)
    sisa: SisaSettings = Field(default_factory=SisaSettings)
    gates: list[str] = Field(default_factory=lambda: list(DEFAULT_GATES))
    metrics: list[str] | None = Field(None, description="metrics to evaluate (default: every default metric)")
    batch_size: int = Field(64, ge=1)
    database: str | None = Field(None, description="SQLAlchemy URL; default a SQLite file in the home folder")
    seed: int = 0
    device: str = "cpu"
    max_rows_per_request: int = Field(100_000, ge=1)
    audit_key_file: str | None = Field(
        None, description="HMAC key signing audit entries, cards and the pointer; outside the home (set at init)"
    )

    @field_validator("gates")
    @classmethod
    def _parse_gates(cls, gates: list[str]) -> list[str]:
        for g in gates:
            Gate(g)
        return gates

    @model_validator(mode="after")
    def _check_method(self) -> PipelineConfig:
        make_config(self.effective_method, **self.effective_method_config)
        return self

    @property
    def effective_method(self) -> str:
        return "sisa" if self.mode == "exact" else self.method

    @property
    def effective_method_config(self) -> dict:
        return {} if self.mode == "exact" else self.method_config
