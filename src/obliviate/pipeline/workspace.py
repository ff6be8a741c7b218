"""A pipeline home folder: its config, ledger, registry, audit log and data, opened together.

Layout::

    HOME/pipeline.json      the PipelineConfig
    HOME/ledger.db          the request ledger (unless ``database`` names another URL)
    HOME/models/            the model registry (vNNNN.safetensors + .json, SERVING.json)
    HOME/audit/             log.jsonl + records/<batch>.json|.html
    HOME/process.lock       held while a processor runs
"""

from __future__ import annotations

import json
from functools import cached_property
from pathlib import Path

from pydantic import ValidationError

from obliviate.atomic import atomic_write_text
from obliviate.data import DataSplit, load_data
from obliviate.forget import ForgetSpec, ForgetSpecError
from obliviate.models import build_model
from obliviate.pipeline.audit import AuditLog
from obliviate.pipeline.config import PipelineConfig
from obliviate.pipeline.ledger import Ledger, Request
from obliviate.pipeline.registry import ModelRegistry
from obliviate.sisa import train_sisa
from obliviate.training import fit


class RequestError(ValueError):
    """A deletion request that cannot be accepted as written (nothing is stored)."""


class UnknownDatasetError(RequestError):
    pass


class Pipeline:
    """Open an existing home folder (``Pipeline.create`` makes one)."""

    def __init__(self, home: str | Path):
        self.home = Path(home)
        path = self.home / "pipeline.json"
        if not path.exists():
            raise FileNotFoundError(f"{self.home}: not a pipeline home (no pipeline.json); run pipeline init")
        self.config = PipelineConfig.model_validate_json(path.read_text())
        self.registry = ModelRegistry(self.home / "models")
        self.audit = AuditLog(self.home / "audit")

    @cached_property
    def ledger(self) -> Ledger:
        return Ledger(self.config.database or f"sqlite:///{(self.home / 'ledger.db').resolve()}")

    @cached_property
    def split(self) -> DataSplit:
        d = self.config.dataset
        return load_data(
            d.source,
            kind=d.kind,
            target=d.target,
            key=d.key,
            features=d.features,
            test_fraction=d.test_fraction,
            seed=d.split_seed,
        )

    def close(self) -> None:
        if "ledger" in self.__dict__:
            self.ledger.close()

    def parse_spec(self, dataset: str, spec: dict | str | ForgetSpec) -> ForgetSpec:
        """Validate a request against the named data set's training split, or raise ``RequestError``."""
        if dataset != self.config.dataset.name:
            served = self.config.dataset.name
            raise UnknownDatasetError(f"unknown data set {dataset!r}; this pipeline serves {served!r}")
        try:
            if isinstance(spec, str):
                spec = ForgetSpec.model_validate_json(spec)
            elif isinstance(spec, dict):
                spec = ForgetSpec.model_validate(spec)
        except ValidationError as exc:
            first = exc.errors()[0]
            raise RequestError(f"invalid spec {'.'.join(map(str, first['loc'])) or ''}: {first['msg']}") from None
        if spec.indices is not None and len(spec.indices) > self.config.max_rows_per_request:
            raise RequestError(f"a request may name at most {self.config.max_rows_per_request} rows")
        try:
            spec.resolve(self.split.train)
        except ForgetSpecError as exc:
            raise RequestError(str(exc)) from None
        return spec

    def submit(
        self,
        dataset: str,
        spec: dict | str | ForgetSpec,
        requester: str,
        reason: str = "",
        client_key: str | None = None,
    ) -> tuple[Request, bool]:
        """Validate and store a request; returns it and whether it is new (see ``Ledger.submit``)."""
        parsed = self.parse_spec(dataset, spec)
        if not requester.strip():
            raise RequestError("a request needs a requester")
        return self.ledger.submit(dataset, parsed.model_dump(exclude_none=True), requester, reason, client_key)

    @classmethod
    def create(cls, home: str | Path, config: PipelineConfig, model=None) -> Pipeline:
        """Make a home folder: write the config, train (or take) the first model, serve it as v0001.

        ``model`` is an already-trained model for approximate mode; without it one is trained
        with the configured architecture and recipe. Exact mode trains a SISA ensemble.
        """
        home = Path(home)
        if (home / "pipeline.json").exists():
            raise FileExistsError(f"{home}: a pipeline already lives here")
        home.mkdir(parents=True, exist_ok=True)
        atomic_write_text(home / "pipeline.json", config.model_dump_json(indent=2))
        pipe = cls(home)
        train = pipe.split.train
        steps = 0
        fresh = build_model(config.architecture, train.input_shape, train.num_outputs, **config.architecture_kwargs)
        if config.mode == "exact":
            s = config.sisa
            model, steps = train_sisa(fresh, train, s.shards, s.slices, config.recipe, s.aggregation, config.seed)
        elif model is None:
            model = fresh
            steps = fit(model, train, config.recipe, device=config.device).steps
        card = {
            "parent": None,
            "method": "sisa-train" if config.mode == "exact" else "train",
            "config": json.loads(config.recipe.model_dump_json()),
            "data": {"name": config.dataset.name, "fingerprint": train.fingerprint(), "rows": len(train)},
            "forgotten_rows": [],
            "batch_id": None,
            "request_ids": [],
            "steps": steps,
        }
        version = pipe.registry.write(model, card)
        pipe.registry.promote(version)
        pipe.audit.append(
            {
                "kind": "init",
                "batch_id": f"init-{version}",
                "outcome": "promoted",
                "model_after": version,
                "sha256_after": pipe.registry.pointer()["sha256"],
                "data_fingerprint": train.fingerprint(),
            }
        )
        return pipe
