"""Processing: claim pending requests, forget them in one run, gate, promote, record.

Order of effects for one batch, chosen so a crash at any point can be repaired:

1. ledger: ``received -> scheduled -> running`` (conditional updates, one batch id);
2. unlearn and evaluate in memory (nothing written);
3. gates fail: audit record (``rejected``), then ledger ``running -> failed`` with the reason;
4. gates pass: registry writes the new version (atomic), promotes it (atomic pointer
   rename: the commit point), then the audit record, then ledger ``running -> done``.

``recover`` runs before any new work, under the processing lock: a batch left open whose
outcome is already in the audit log is finished as recorded (done or failed); one whose
version is in the promotion history is rolled forward (audit written, requests marked
done); any other open batch is rolled back to ``received`` (it will be retried), and
versions that were written but never promoted are deleted. So each request is either done
exactly once, or pending/failed, and the ledger agrees with the registry and the audit log.

Before a batch is claimed the serving model is loaded through ``verify_serving``: a home
whose pointer, cards, weights, audit log or ledger anchors were altered is refused, so no
request is left running and no version is ever built from a model that was swapped in. The
data are checked too (``Pipeline.data_drift``): if the data file changed since the first
version was made, ``DataDriftError`` refuses the batch before anything is claimed or written.

Step 2 is the only one that depends on the kind of model: a classifier (or regressor) forgets
rows with ``unlearn`` and is measured by ``evaluate``; a causal LM forgets the facts of keys
with ``unlearn_lm`` and is measured by ``verify_lm`` (``obliviate.pipeline.lm``). Both give a
``Candidate``; gates, versions, promotion, audit and ledger treat the two alike.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from obliviate.evaluation import evaluate
from obliviate.forget import ForgetSpec, ForgetSpecError
from obliviate.methods import MethodError, unlearn
from obliviate.pipeline import lm as causal
from obliviate.pipeline.audit import rows_sha256
from obliviate.pipeline.batching import BatchPlan, KeyPlan, batch_kind, plan_batch, plan_keys
from obliviate.pipeline.gates import check_gates
from obliviate.pipeline.integrity import anchor_tail, spec_sha256, verify_serving
from obliviate.pipeline.workspace import DataDriftError, Pipeline
from obliviate.records import RunLog


class BusyError(RuntimeError):
    """Another processor holds this pipeline's lock."""


@dataclass
class BatchOutcome:
    batch_id: str
    request_ids: list[str]
    outcome: str  # promoted | rejected | noop | error
    version: str | None = None
    reasons: list[str] = field(default_factory=list)
    seconds: float = 0.0
    metrics: dict[str, float] = field(default_factory=dict)


@dataclass
class Candidate:
    """One unlearning run's result, before the gates: the model to write, the metrics of it and
    of its parent, the run log, the card's data entry, extra card fields, and findings that
    explain a refusal (a failed verdict check's reason, say)."""

    model: object
    metrics: dict[str, float]
    parent_metrics: dict[str, float]
    log: RunLog
    data: dict
    details: dict = field(default_factory=dict)
    findings: list[str] = field(default_factory=list)


@contextmanager
def processing_lock(home: Path, wait: bool = False):
    """An exclusive ``flock`` on ``HOME/process.lock``; the kernel drops it if the process dies."""
    fd = os.open(home / "process.lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX if wait else fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise BusyError(f"{home}: another 'obliviate pipeline process' is running") from None
        yield
    finally:
        os.close(fd)


def recover(pipe: Pipeline) -> dict[str, list[str]]:
    """Repair what an interrupted processor left; call only while holding the lock.

    Refuses (``IntegrityError``) a home whose audit log or serving pointer was altered, before
    deleting anything: an edited promotion history must not make promoted versions look like
    leftovers.
    """
    anchor_tail(pipe)
    history = pipe.registry.verified_pointer()["history"]
    by_batch = {pipe.registry.card(v).get("batch_id"): v for v in history}
    recorded = {e["record"].get("batch_id"): e["record"] for e in pipe.audit.entries()}
    done, failed, retried = [], [], []
    for batch_id in pipe.ledger.open_batches():
        version, rec = by_batch.get(batch_id), recorded.get(batch_id)
        if rec is not None and rec["outcome"] in ("rejected", "error"):
            _close(pipe, batch_id, "failed", fail_reason="; ".join(rec.get("reasons", [])))
            failed.append(batch_id)
        elif rec is not None or version is not None:
            if rec is None:
                rec = pipe.record(_record(pipe, version, pipe.registry.card(version), "promoted"))["record"]
            _close(pipe, batch_id, "done", model_version=rec["model_after"], fail_reason=None)
            done.append(batch_id)
        else:
            for state in ("scheduled", "running"):
                pipe.ledger.move(batch_id, state, "received", batch_id=None)
            retried.append(batch_id)
    last = int(history[-1][1:]) if history else 0
    discarded = [v for v in pipe.registry.versions() if v not in history and int(v[1:]) > last]
    for version in discarded:
        pipe.registry.discard(version)
    for tmp in pipe.registry.root.glob(".*.tmp"):
        if tmp.is_dir() and not tmp.is_symlink():
            shutil.rmtree(tmp)
        else:
            tmp.unlink(missing_ok=True)
    pipe.audit.clean()
    return {"rolled_forward": done, "closed_as_failed": failed, "rolled_back": retried, "discarded_versions": discarded}


def _close(pipe: Pipeline, batch_id: str, target: str, **values) -> None:
    pipe.ledger.move(batch_id, "scheduled", "running")
    pipe.ledger.move(batch_id, "running", target, **values)


def _record(pipe: Pipeline, version: str | None, card: dict, outcome: str, **extra) -> dict:
    """The audit record of a batch, built from the new version's card (so recovery can rebuild it)."""
    before = card.get("parent")
    return {
        "kind": "batch",
        "batch_id": card["batch_id"],
        "outcome": outcome,
        "request_ids": card["request_ids"],
        "request_specs_sha256": {rid: spec_sha256(spec) for rid, spec in card.get("request_specs", {}).items()},
        "dataset": pipe.config.dataset.name,
        "data_fingerprint": card.get("data", {}).get("fingerprint"),
        "mode": pipe.config.mode,
        "method": card["method"],
        "config": card["config"],
        "spec": card.get("spec"),
        "gates": pipe.config.gates,
        "metrics": card.get("metrics", {}),
        "parent_metrics": card.get("parent_metrics", {}),
        "model_before": before,
        "sha256_before": pipe.registry.card(before).get("sha256") if before else None,
        "model_after": version,
        "sha256_after": card.get("sha256") if version else None,
        "forgotten_rows": len(card.get("batch_rows", [])),
        "forgotten_rows_sha256": rows_sha256(card.get("batch_rows", [])),
        "seconds": card.get("seconds"),
        **extra,
    }


def process_batch(pipe: Pipeline) -> BatchOutcome | None:
    """Claim and serve one batch; None when no request is waiting. Call while holding the lock."""
    cfg = pipe.config
    if not pipe.ledger.list(state="received", limit=1):
        return None
    parent, model, parent_card = verify_serving(pipe)
    drift = pipe.data_drift()
    if drift:
        raise DataDriftError(drift)
    batch_id, requests = pipe.ledger.claim(cfg.batch_size, kind=batch_kind)
    if not requests:
        return None
    start = time.perf_counter()
    ids = [r.id for r in requests]
    pipe.ledger.move(batch_id, "scheduled", "running")
    seq, head = pipe.audit.head()
    card = {
        "parent": parent,
        "batch_id": batch_id,
        "request_ids": ids,
        "request_specs": {r.id: r.spec for r in requests},
        "audit_head": {"seq": seq, "hash": head},
        "method": cfg.effective_method,
        "config": cfg.effective_method_config,
        "batch_rows": [],
    }
    try:
        specs = [ForgetSpec.model_validate(r.spec) for r in requests]
        if cfg.is_lm:
            plan = plan_keys(specs, parent_card["forgotten_rows"])
        else:
            plan = plan_batch(specs, pipe.split.train, parent_card["forgotten_rows"])
        card["batch_rows"] = plan.rows
        if plan.spec is None:
            return _finish_noop(pipe, batch_id, ids, parent, card, start)
        card["spec"] = plan.spec.model_dump(exclude_none=True)
        run = _unlearn_facts(pipe, model, plan) if cfg.is_lm else _unlearn_rows(pipe, model, plan)
    except (ForgetSpecError, MethodError, FloatingPointError, ValueError, KeyError) as exc:
        reason = f"{type(exc).__name__}: {exc}"
        pipe.record(_record(pipe, None, card, "error", reasons=[reason]))
        pipe.ledger.move(batch_id, "running", "failed", fail_reason=reason)
        return BatchOutcome(batch_id, ids, "error", None, [reason], time.perf_counter() - start)
    metrics = run.metrics
    card.update(
        metrics=metrics,
        parent_metrics=run.parent_metrics,
        config=run.log.config,
        steps=run.log.steps,
        seconds=time.perf_counter() - start,
        data=run.data,
        forgotten_rows=sorted(parent_card["forgotten_rows"] + plan.rows),
        **run.details,
    )
    reasons = check_gates(cfg.gates, plan.spec.scenario, metrics, run.parent_metrics)
    reasons += run.findings if reasons else []
    if reasons:
        pipe.record(_record(pipe, None, card, "rejected", reasons=reasons))
        pipe.ledger.move(batch_id, "running", "failed", fail_reason="; ".join(reasons))
        return BatchOutcome(batch_id, ids, "rejected", None, reasons, time.perf_counter() - start, metrics)
    version = pipe.registry.write(run.model, card)
    pipe.registry.promote(version)
    pipe.record(_record(pipe, version, pipe.registry.card(version), "promoted"))
    pipe.ledger.move(batch_id, "running", "done", model_version=version, fail_reason=None)
    return BatchOutcome(batch_id, ids, "promoted", version, [], time.perf_counter() - start, metrics)


def _unlearn_rows(pipe: Pipeline, model, plan: BatchPlan) -> Candidate:
    """A classifier or regressor: ``unlearn`` the batch's rows, ``evaluate`` candidate and parent."""
    cfg = pipe.config
    task = plan.task(pipe.split)
    result = unlearn(model, task, cfg.effective_method, seed=cfg.seed, device=cfg.device, **cfg.effective_method_config)
    report = evaluate(
        task, {"candidate": result.model, "parent": model}, reference=None, original="parent",
        metrics=cfg.metrics, seed=cfg.seed, device=cfg.device,
    )  # fmt: skip
    data = {"name": cfg.dataset.name, "fingerprint": task.retain.fingerprint(), "rows": len(task.retain)}
    return Candidate(
        result.model, report.models["candidate"].metrics, report.models["parent"].metrics, result.log, data
    )


def _unlearn_facts(pipe: Pipeline, served: causal.CausalLM, plan: KeyPlan) -> Candidate:
    """A causal LM: ``unlearn_lm`` the facts of the batch's keys, judge with ``verify_lm`` (forget
    facts against never-seen facts, retain answers against the parent), and measure the answer
    losses of both models; the verdict goes on the card."""
    from obliviate.llm import unlearn_lm, verify_lm

    cfg = pipe.config
    served.model.to(cfg.device)  # freshly loaded: the frozen reference, on the device the run uses
    task = causal.fact_task(pipe.facts, plan.rows, plan.gone, cfg.dataset.holdout_keys)
    result = unlearn_lm(
        served.model, served.tokenizer, task, cfg.method, seed=cfg.seed, device=cfg.device, **cfg.method_config
    )
    candidate = causal.CausalLM(result.model, served.tokenizer)
    verdict = verify_lm(result.model, served.tokenizer, task, original=served.model, seed=cfg.seed)
    metrics = {**causal.verdict_metrics(verdict), **causal.loss_metrics(candidate, task)}
    data = {"name": cfg.dataset.name, "fingerprint": pipe.data_fingerprint(), "rows": len(task.retain)}
    details = {"verdict": verdict.to_dict()}
    failed = [f"verdict check {c.name} failed: {c.reason}" for c in verdict.checks if c.status == "fail"]
    return Candidate(candidate, metrics, causal.loss_metrics(served, task), result.log, data, details, failed)


def _finish_noop(pipe: Pipeline, batch_id: str, ids: list[str], parent: str, card: dict, start: float) -> BatchOutcome:
    """Every row asked for was already forgotten: the serving version already honours the batch."""
    pipe.record(_record(pipe, parent, {**card, "sha256": pipe.registry.pointer()["sha256"]}, "noop"))
    pipe.ledger.move(batch_id, "running", "done", model_version=parent, fail_reason=None)
    return BatchOutcome(batch_id, ids, "noop", parent, [], time.perf_counter() - start)


def process(pipe: Pipeline, max_batches: int | None = None, wait: bool = False) -> list[BatchOutcome]:
    """Recover, then serve batches until the queue is empty (or ``max_batches`` were served)."""
    outcomes: list[BatchOutcome] = []
    with processing_lock(pipe.home, wait=wait):
        recover(pipe)
        while max_batches is None or len(outcomes) < max_batches:
            outcome = process_batch(pipe)
            if outcome is None:
                break
            outcomes.append(outcome)
    return outcomes
