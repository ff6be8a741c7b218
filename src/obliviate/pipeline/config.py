"""The pipeline's configuration: which data and model it serves, how it forgets, and the gates."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from obliviate.methods import make_config
from obliviate.pipeline.gates import DEFAULT_GATES, Gate
from obliviate.pipeline.lm import LM_GATES
from obliviate.training import TrainConfig


class DataSource(BaseModel):
    """A named data set; requests refer to its training rows by position in this split.

    ``kind="causal_lm"``: ``source`` is a JSONL file of question/answer/key facts the served
    causal LM was trained on, requests name keys, and ``holdout_keys`` are keys in that file the
    model never saw (the never-seen facts ``verify_lm`` compares forgotten facts with)."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=200)
    source: str
    split_seed: int = 0
    test_fraction: float = Field(0.2, gt=0, lt=1)
    kind: Literal["classification", "regression", "causal_lm"] = "classification"
    target: str | None = None
    key: str | None = None
    features: list[str] | None = None
    holdout_keys: list[str] = Field(default_factory=list)

    @model_validator(mode="after")
    def _holdout_only_for_lm(self) -> DataSource:
        if self.holdout_keys and self.kind != "causal_lm":
            raise ValueError("holdout_keys apply to causal-LM facts only")
        return self


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
    For a causal LM (``dataset.kind="causal_lm"``) ``method`` is an LM method (default ``npo``)
    and the default gates read the ``verify_lm`` verdict (``LM_GATES``).
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

    @model_validator(mode="before")
    @classmethod
    def _lm_defaults(cls, values):
        """A causal LM's method and gates default to the LM ones, not the classifier ones."""
        if not isinstance(values, dict):
            return values
        data = values.get("dataset")
        kind = data.kind if isinstance(data, DataSource) else (data or {}).get("kind")
        if kind == "causal_lm":
            values = {"method": "npo", "gates": list(LM_GATES), **values}
        return values

    @field_validator("gates")
    @classmethod
    def _parse_gates(cls, gates: list[str]) -> list[str]:
        for g in gates:
            Gate(g)
        return gates

    @model_validator(mode="after")
    def _check_method(self) -> PipelineConfig:
        if not self.is_lm:
            make_config(self.effective_method, **self.effective_method_config)
            return self
        if self.mode == "exact":
            raise ValueError("exact mode (SISA) serves classifiers; a causal LM is served in approximate mode")
        from obliviate.llm.methods import make_lm_config

        make_lm_config(self.method, **self.method_config)
        return self

    @property
    def is_lm(self) -> bool:
        return self.dataset.kind == "causal_lm"

    @property
    def effective_method(self) -> str:
        return "sisa" if self.mode == "exact" else self.method

    @property
    def effective_method_config(self) -> dict:
        return {} if self.mode == "exact" else self.method_config
