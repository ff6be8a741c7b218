"""A pipeline home folder: its config, ledger, registry, audit log and data, opened together.

Layout::

    HOME/pipeline.json      the PipelineConfig
    HOME/ledger.db          the request ledger (unless ``database`` names another URL)
    HOME/models/            the model registry (vNNNN.safetensors + .json, SERVING.json;
                            for a causal LM a directory vNNNN/ in place of the weights file)
    HOME/audit/             log.jsonl + records/<batch>.json|.html
    HOME/process.lock       held while a processor runs
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from functools import cached_property
from pathlib import Path

from pydantic import ValidationError

from obliviate.atomic import atomic_write_text
from obliviate.checkpoint import build_checked, file_sha256
from obliviate.data import DataError, DataSplit, load_data
from obliviate.forget import ForgetSpec, ForgetSpecError, file_rows
from obliviate.methods.sisa import train_sisa
from obliviate.pipeline import lm as causal
from obliviate.pipeline.audit import AuditLog
from obliviate.pipeline.config import PipelineConfig
from obliviate.pipeline.ledger import Ledger, Request
from obliviate.pipeline.registry import ModelRegistry
from obliviate.pipeline.signing import IntegrityError, Signer, create_key, default_key_file
from obliviate.training import fit


class RequestError(ValueError):
    """A deletion request that cannot be accepted as written (nothing is stored)."""


class UnknownDatasetError(RequestError):
    pass


class DataDriftError(ValueError):
    """The data file no longer holds the data the served versions were built on (nothing is processed)."""


class Pipeline:
    """Open an existing home folder (``Pipeline.create`` makes one)."""

    def __init__(self, home: str | Path):
        self.home = Path(home)
        path = self.home / "pipeline.json"
        if not path.exists():
            raise FileNotFoundError(f"{self.home}: not a pipeline home (no pipeline.json); run pipeline init")
        self.config = PipelineConfig.model_validate_json(path.read_text())
        if not self.config.audit_key_file:
            raise IntegrityError(f"{path} names no audit key (audit_key_file); this home was not made by pipeline init")
        self.signer = Signer.from_file(self.config.audit_key_file)
        self.registry = ModelRegistry(self.home / "models", self.signer, lm=self.config.is_lm)
        self.audit = AuditLog(self.home / "audit", self.signer)

    @cached_property
    def ledger(self) -> Ledger:
        return Ledger(self.config.database or f"sqlite:///{(self.home / 'ledger.db').resolve()}")

    @cached_property
    def split(self) -> DataSplit:
        return _load_split(self.config)

    @cached_property
    def facts(self) -> list:
        """A causal-LM pipeline's question/answer facts (``obliviate.llm.QA``), read from its JSONL file."""
        return causal.read_facts(self.config.dataset.source, self.config.dataset.holdout_keys)

    def data_fingerprint(self) -> str:
        """The data as they are now, hashed as the first version's card records them: a causal
        LM's facts file by its sha256, a classifier's training split by ``Dataset.fingerprint``."""
        if self.config.is_lm:
            return file_sha256(self.config.dataset.source)
        return self.split.train.fingerprint()

    def data_drift(self) -> str | None:
        """One line saying how the data differ from those recorded when the pipeline was made, or
        None. Request keys and row ids resolve against these data and retrain-style methods train
        on them, so a batch served from other data would forget other rows than the model saw."""
        first = self.registry.history()[0]
        card = self.registry.card(first)
        self.registry.verify_card(first, card)
        recorded = card.get("data", {}).get("fingerprint")
        what = "facts file" if self.config.is_lm else "training split of"
        try:
            now = self.data_fingerprint()
        except (OSError, DataError) as exc:
            return f"data changed since {first}: {self.config.dataset.source} cannot be read ({exc})"
        if now == recorded:
            return None
        return (
            f"data changed since {first}: the {what} {self.config.dataset.source} hashes to {now[:12]}, "
            f"{first} recorded {str(recorded)[:12]}; restore the data it was built on"
        )

    def requested_rows(self, spec: dict) -> set:
        """What a stored request forgets: original training-row ids, or a causal LM's keys."""
        parsed = ForgetSpec.model_validate(spec)
        if self.config.is_lm:
            return {str(k) for k in parsed.keys}
        return set(parsed.resolve(self.split.train).tolist())

    def record(self, record: dict) -> dict:
        """Append an audit record and anchor the new head in the ledger; returns the log entry."""
        entry = self.audit.append(record)
        self.ledger.anchor(entry["seq"], entry["hash"])
        return entry

    def close(self) -> None:
        if "ledger" in self.__dict__:
            self.ledger.close()

    def parse_spec(self, dataset: str, spec: dict | str | ForgetSpec, rows_of_file: bool = False) -> ForgetSpec:
        """Validate a request against the named data set's training split, or raise ``RequestError``.

        ``rows_of_file``: the request's ``indices`` name rows of the data file, as on the command
        line (``obliviate.forget.file_rows``), and the request is kept as the keys of those rows;
        otherwise ``indices`` are positions in the training split, as in a ``ForgetSpec``."""
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
        named = spec.indices if spec.indices is not None else spec.keys
        if named is not None and len(named) > self.config.max_rows_per_request:
            raise RequestError(f"a request may name at most {self.config.max_rows_per_request} rows")
        if self.config.is_lm:
            return self._parse_keys(spec)
        try:
            if rows_of_file:
                spec = file_rows(spec, self.split)
            spec.resolve(self.split.train)
        except ForgetSpecError as exc:
            raise RequestError(str(exc)) from None
        except (OverflowError, ValueError) as exc:  # numbers beyond 64 bits, say
            raise RequestError(f"invalid spec: {str(exc).splitlines()[0]}") from None
        return spec

    def _parse_keys(self, spec: ForgetSpec) -> ForgetSpec:
        """A causal LM forgets people by key: any other selector, or a key the model was not
        trained on (absent from the facts file, or one of the never-seen keys), is refused."""
        if spec.keys is None:
            raise RequestError(f"a causal-LM pipeline forgets by key; {spec.describe()} names no keys (use --keys)")
        try:
            causal.check_keys(spec.keys, self.facts, self.config.dataset.holdout_keys)
        except ValueError as exc:
            raise RequestError(str(exc)) from None
        return ForgetSpec(keys=sorted({str(k) for k in spec.keys}))

    def submit(
        self,
        dataset: str,
        spec: dict | str | ForgetSpec,
        requester: str,
        reason: str = "",
        client_key: str | None = None,
        rows_of_file: bool = False,
    ) -> tuple[Request, bool]:
        """Validate and store a request; returns it and whether it is new (see ``Ledger.submit``).

        ``rows_of_file``: ``indices`` are rows of the data file (see ``parse_spec``)."""
        parsed = self.parse_spec(dataset, spec, rows_of_file)
        if not isinstance(requester, str) or not requester.strip():
            raise RequestError("a request needs a requester")
        for name, text in (("requester", requester), ("reason", reason), ("client_key", client_key or "")):
            _check_text(name, text)
        _check_text("spec", json.dumps(parsed.model_dump(exclude_none=True), ensure_ascii=False))
        return self.ledger.submit(dataset, parsed.model_dump(exclude_none=True), requester, reason, client_key)

    @classmethod
    def create(cls, home: str | Path, config: PipelineConfig, model=None) -> Pipeline:
        """Make a home folder: write the config, train (or take) the first model, serve it as v0001.

        ``model`` is an already-trained model for approximate mode; without it one is trained
        with the configured architecture and recipe. Exact mode trains a SISA ensemble. Data and
        model are checked before anything is written, and the home is assembled in a temporary
        folder renamed into place at the end, so a failed init leaves nothing behind.
        """
        home = Path(home)
        if (home / "pipeline.json").exists():
            raise FileExistsError(f"{home}: a pipeline already lives here")
        if home.exists() and (not home.is_dir() or any(home.iterdir())):
            raise FileExistsError(f"{home}: exists and is not an empty folder")
        key = Path(config.audit_key_file) if config.audit_key_file else default_key_file()
        config = config.model_copy(update={"audit_key_file": str(key.expanduser().resolve())})
        if config.is_lm:
            model, data, method, steps = _first_lm(config, model)
        else:
            model, data, method, steps = _first_model(config, model)
        home.parent.mkdir(parents=True, exist_ok=True)
        staging = home.parent / f".{home.name}.init-{uuid.uuid4().hex[:8]}"
        made_key = False
        try:
            made_key = create_key(key, home)
            staging.mkdir()
            atomic_write_text(staging / "pipeline.json", config.model_dump_json(indent=2))
            pipe = cls(staging)
            card = {
                "parent": None,
                "method": method,
                "config": {} if config.is_lm else json.loads(config.recipe.model_dump_json()),
                "data": data,
                "forgotten_rows": [],
                "batch_id": None,
                "request_ids": [],
                "steps": steps,
                "audit_head": {"seq": -1, "hash": None},
            }
            version = pipe.registry.write(model, card)
            pipe.registry.promote(version)
            pipe.record(
                {
                    "kind": "init",
                    "batch_id": f"init-{version}",
                    "outcome": "promoted",
                    "model_after": version,
                    "sha256_after": pipe.registry.pointer()["sha256"],
                    "data_fingerprint": data["fingerprint"],
                }
            )
            pipe.close()
            if home.exists():
                home.rmdir()
            os.rename(staging, home)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            if made_key:
                key.unlink(missing_ok=True)
            raise
        return cls(home)


def _first_model(config: PipelineConfig, model) -> tuple:
    """A classifier's first version: ``model`` checked against the data, else trained (SISA in
    exact mode); returns it with its card's data entry, method name and training steps."""
    train = _load_split(config).train
    if model is not None:
        _check_fits(model, train)
    fresh = build_checked(config.architecture, train.input_shape, train.num_outputs, **config.architecture_kwargs)
    steps = 0
    if config.mode == "exact":
        s = config.sisa
        model, steps = train_sisa(fresh, train, s.shards, s.slices, config.recipe, s.aggregation, config.seed)
    elif model is None:
        model = fresh
        steps = fit(model, train, config.recipe, device=config.device).steps
    data = {"name": config.dataset.name, "fingerprint": train.fingerprint(), "rows": len(train)}
    return model, data, "sisa-train" if config.mode == "exact" else "train", steps


def _first_lm(config: PipelineConfig, model) -> tuple:
    """A causal LM's first version is the model given (loaded from its directory, which the
    pipeline never writes to); the facts file is read and checked first."""
    if not isinstance(model, causal.CausalLM):
        raise ValueError("a causal-LM pipeline serves a given model: pass its Hugging Face directory")
    facts = causal.read_facts(config.dataset.source, config.dataset.holdout_keys)
    trained = [qa for qa in facts if qa.key not in set(config.dataset.holdout_keys)]
    if not trained:
        raise ValueError(f"{config.dataset.source}: every key is a never-seen key; nothing was trained on")
    data = {"name": config.dataset.name, "fingerprint": file_sha256(config.dataset.source), "rows": len(trained)}
    return model, data, "import", 0


def _check_text(name: str, text) -> None:
    """Text must be storable: a string of valid Unicode (JSON allows lone surrogates, UTF-8 does not)."""
    if not isinstance(text, str):
        raise RequestError(f"{name} must be text")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise RequestError(f"{name} is not a valid unicode string (it holds a lone surrogate)") from None


def _load_split(config: PipelineConfig) -> DataSplit:
    d = config.dataset
    return load_data(
        d.source,
        kind=d.kind,
        target=d.target,
        key=d.key,
        features=d.features,
        test_fraction=d.test_fraction,
        seed=d.split_seed,
    )


def _check_fits(model, train) -> None:
    """A served model must take the data's inputs and predict its outputs."""
    spec = getattr(model, "obliviate_spec", None) or {}
    shape, outputs = spec.get("input_shape"), spec.get("num_outputs")
    if shape is not None and tuple(shape) != tuple(train.input_shape):
        raise ValueError(f"the model takes inputs of shape {tuple(shape)} but the data has {tuple(train.input_shape)}")
    if outputs is not None and outputs != train.num_outputs:
        raise ValueError(f"the model has {outputs} outputs but the data needs {train.num_outputs}")
