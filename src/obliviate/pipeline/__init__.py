"""The deletion pipeline: a ledger of requests, a model registry, processing with gates, an audit
trail, and an HTTP service (DESIGN section 6). A user of the core, not part of it; it needs the
``pipeline`` extra (SQLAlchemy), and the service the ``serve`` extra."""

from obliviate.pipeline.audit import AuditLog, Verification
from obliviate.pipeline.config import DataSource, PipelineConfig, SisaSettings
from obliviate.pipeline.ledger import ConflictError, Ledger, LedgerError, Request
from obliviate.pipeline.lm import CausalLM
from obliviate.pipeline.processor import BatchOutcome, BusyError, process, process_batch, recover
from obliviate.pipeline.registry import ModelRegistry, RegistryError
from obliviate.pipeline.workspace import DataDriftError, Pipeline, RequestError, UnknownDatasetError

__all__ = [
    "AuditLog",
    "BatchOutcome",
    "BusyError",
    "CausalLM",
    "ConflictError",
    "DataDriftError",
    "DataSource",
    "Ledger",
    "LedgerError",
    "ModelRegistry",
    "Pipeline",
    "PipelineConfig",
    "RegistryError",
    "Request",
    "RequestError",
    "SisaSettings",
    "UnknownDatasetError",
    "Verification",
    "process",
    "process_batch",
    "recover",
]
