"""Deletion-pipeline commands: ``obliviate pipeline init|submit|status|process|retry|models|serve``,
``obliviate audit verify|show``, and the shortcuts ``obliviate process`` and ``obliviate serve``."""

from __future__ import annotations

import json
import time
from pathlib import Path

import typer
from rich.table import Table

from obliviate.cli.app import (
    ClassesOpt,
    FeaturesOpt,
    FractionOpt,
    KeyOpt,
    KeysFileOpt,
    KeysOpt,
    RangeOpt,
    RowsOpt,
    SpecOpt,
    SpecSeedOpt,
    SubclassOpt,
    TargetOpt,
    app,
    build_spec,
    console,
    err_console,
    parse_columns,
    parse_values,
    read_keys,
)
from obliviate.cli.devices import DeviceOpt, resolve_device

pipeline_app = typer.Typer(help="Honour deletion requests: ledger, processing, model registry.", no_args_is_help=True)
audit_app = typer.Typer(help="The audit trail of processed deletion batches.", no_args_is_help=True)
app.add_typer(pipeline_app, name="pipeline")
app.add_typer(audit_app, name="audit")

HomeOpt = typer.Option(
    Path("obliviate-pipeline"), "--home", envvar="OBLIVIATE_HOME", help="pipeline home folder (env OBLIVIATE_HOME)"
)


def _open(home: Path):
    _need_pipeline()
    from obliviate.pipeline import Pipeline

    return Pipeline(home)


def _need_pipeline() -> None:
    from obliviate.extras import need

    need("sqlalchemy", "pipeline")


def _fail(message: str) -> None:
    err_console.print(f"error: {message}", markup=False)
    raise typer.Exit(2)


@pipeline_app.command("init")
def init(
    home: Path = HomeOpt,
    data: str = typer.Option("digits", help="bundled data set or path"),
    target: str = TargetOpt,
    key: str = KeyOpt,
    features: str = FeaturesOpt,
    name: str = typer.Option(None, help="the name requests use for the data set (default: --data)"),
    split_seed: int = typer.Option(0, help="seed of the train/test split the row ids refer to"),
    model: str = typer.Option("mlp", help="architecture name, or a factory 'package.module:function'"),
    model_option: list[str] = typer.Option(None, "--model-set", help="architecture argument key=value"),
    train_option: list[str] = typer.Option(None, "--train-set", help="training recipe override key=value"),
    model_file: Path = typer.Option(
        None,
        help="serve this trained model instead of training one (a causal LM: its Hugging Face directory, "
        "with --data FILE.jsonl)",
    ),
    holdout_keys: str = typer.Option(
        None, "--holdout-keys", help="causal LM: comma-separated keys of the facts file the model never saw"
    ),
    mode: str = typer.Option("approximate", help="approximate (run --method) or exact (SISA)"),
    method: str = typer.Option(
        None, help="unlearning method in approximate mode (default finetune; npo for a causal LM)"
    ),
    option: list[str] = typer.Option(None, "--set", help="method config override key=value"),
    gate: list[str] = typer.Option(None, "--gate", help="promotion gate, e.g. 'forget_acc <= test_acc + 2' (repeat)"),
    metric: list[str] = typer.Option(None, "--metric", help="metrics to evaluate (default: all default ones)"),
    batch_size: int = typer.Option(64, help="most requests served by one run (1 = no batching)"),
    shards: int = typer.Option(4, help="SISA shards (exact mode)"),
    slices: int = typer.Option(4, help="SISA slices per shard (exact mode)"),
    database: str = typer.Option(None, help="SQLAlchemy URL of the ledger (default: SQLite in the home folder)"),
    seed: int = typer.Option(0),
    audit_key: Path = typer.Option(
        None,
        help="HMAC key file signing the audit trail, outside the home (default: a new one under "
        "$OBLIVIATE_KEY_DIR or ~/.config/obliviate/keys)",
    ),
    device: str = DeviceOpt,
) -> None:
    """Create a pipeline home: config, ledger, and the first model version (trained unless --model-file).
    The device is stored in the config; ``process --device`` overrides it for one run.

    A causal LM: ``--model-file`` its Hugging Face directory (copied in as v0001, never written
    to), ``--data`` the JSONL facts it was trained on, ``--holdout-keys`` people it never saw."""
    from obliviate.checkpoint import load_model
    from obliviate.cli.llm import _keys, _llm, lm_request
    from obliviate.training import TrainConfig

    _need_pipeline()
    from obliviate.pipeline import DataSource, Pipeline, PipelineConfig, SisaSettings
    from obliviate.pipeline.lm import load_version

    lm = model_file is not None and lm_request([model_file], data)
    if holdout_keys and not lm:
        _fail("--holdout-keys apply to a causal LM (--model-file DIRECTORY --data FILE.jsonl)")
    settings = {
        "dataset": DataSource(
            name=name or data,
            source=str(Path(data).resolve()) if lm else data,
            split_seed=split_seed,
            target=target,
            key=key,
            features=parse_columns(features),
            **({"kind": "causal_lm", "holdout_keys": _keys(holdout_keys)} if lm else {}),
        ),
        "architecture": model,
        "architecture_kwargs": parse_values(model_option),
        "recipe": TrainConfig(**{"seed": seed, **parse_values(train_option)}),
        "mode": mode,
        "method_config": parse_values(option),
        "sisa": SisaSettings(shards=shards, slices=slices),
        "metrics": metric or None,
        "batch_size": batch_size,
        "database": database,
        "seed": seed,
        "audit_key_file": str(audit_key) if audit_key else None,
        "device": str(resolve_device(device)),
    }
    if method:
        settings["method"] = method
    if gate:
        settings["gates"] = gate
    config = PipelineConfig(**settings)
    served = None
    if lm:
        _llm()  # a one-line error without the llm extra
        served = load_version(model_file)
    elif model_file:
        served = load_model(model_file)[0]
    start = time.perf_counter()
    try:
        pipe = Pipeline.create(home, config, served)
    except FileExistsError as exc:
        _fail(str(exc))
    version = pipe.registry.serving()
    console.print(f"pipeline ready in {home} · serving {version} · {time.perf_counter() - start:.1f}s")


@pipeline_app.command("submit")
def submit(
    home: Path = HomeOpt,
    dataset: str = typer.Option(..., help="name of the data set the rows belong to"),
    requester: str = typer.Option(..., help="who asks"),
    reason: str = typer.Option("", help="why (free text, kept in the ledger)"),
    client_key: str = typer.Option(None, help="idempotency key: submitting it again returns the same request"),
    spec: str = SpecOpt,
    classes: str = ClassesOpt,
    subclass: str = SubclassOpt,
    indices: str = RowsOpt,
    keys: str = KeysOpt,
    keys_file: Path = KeysFileOpt,
    fraction: float = FractionOpt,
    target_range: str = RangeOpt,
    spec_seed: int = SpecSeedOpt,
) -> None:
    """Record a deletion request (validated against the data set; nothing is stored if it is bad).

    As with ``obliviate forget``, ``--indices`` are rows of the data file and are stored as the
    keys of those rows; data with a key column are named with ``--keys``."""
    forget = build_spec(spec, classes, subclass, indices, fraction, target_range, spec_seed, read_keys(keys, keys_file))
    pipe = _open(home)
    req, created = pipe.submit(dataset, forget, requester, reason, client_key, rows_of_file=True)
    console.print(f"{'submitted' if created else 'already submitted'} {req.id} ({req.state})")


@pipeline_app.command("status")
def status(
    home: Path = HomeOpt,
    request_id: str = typer.Argument(None, help="one request (default: a table of all)"),
    state: str = typer.Option(None, help="only requests in this state"),
    limit: int = typer.Option(50, help="most rows in the table"),
) -> None:
    """Show one request as JSON, or the ledger as a table with counts per state."""
    pipe = _open(home)
    if request_id:
        console.print_json(json.dumps(pipe.ledger.get(request_id).to_dict()))
        return
    table = Table("id", "state", "requester", "spec", "version", "reason for failure", "updated")
    for r in pipe.ledger.list(state=state)[-limit:]:
        table.add_row(r.id, r.state, r.requester, json.dumps(r.spec)[:40], r.model_version or "", r.fail_reason or "",
                      r.updated_at)  # fmt: skip
    console.print(table)
    console.print(" · ".join(f"{k} {v}" for k, v in pipe.ledger.counts().items()))


@pipeline_app.command("process")
def process_cmd(
    home: Path = HomeOpt,
    max_batches: int = typer.Option(None, help="stop after this many batches"),
    wait: bool = typer.Option(False, help="wait for a running processor instead of exiting"),
    watch: float = typer.Option(None, help="keep polling the queue every this many seconds"),
    device: str = typer.Option(None, "--device", help="run on this device instead of the configured one"),
) -> None:
    """Serve waiting requests: recover interrupted work, then batch, unlearn, gate, promote, record."""
    pipe = _open(home)
    from obliviate.pipeline import BusyError, process

    if device is not None:
        pipe.config = pipe.config.model_copy(update={"device": str(resolve_device(device))})
    while True:
        try:
            outcomes = process(pipe, max_batches=max_batches, wait=wait)
        except BusyError as exc:
            _fail(str(exc))
        for o in outcomes:
            detail = o.version or "; ".join(o.reasons)
            console.print(f"batch {o.batch_id}: {len(o.request_ids)} requests {o.outcome} {detail} ({o.seconds:.1f}s)")
        if watch is None:
            if not outcomes:
                console.print("no requests waiting")
            return
        time.sleep(watch)


@pipeline_app.command("retry")
def retry(
    home: Path = HomeOpt,
    request_ids: list[str] = typer.Argument(None, help="failed requests to queue again"),
    all_failed: bool = typer.Option(False, "--all-failed", help="queue every failed request again"),
) -> None:
    """Put failed requests back in the queue."""
    pipe = _open(home)
    ids = [r.id for r in pipe.ledger.list(state="failed")] if all_failed else list(request_ids or [])
    if not ids:
        _fail("name request ids or pass --all-failed")
    for rid in ids:
        pipe.ledger.retry(rid)
    console.print(f"{len(ids)} request(s) queued again")


@pipeline_app.command("models")
def models(
    home: Path = HomeOpt, check: bool = typer.Option(False, help="load every version and check its hash")
) -> None:
    """List model versions; the serving one is marked (a causal LM's show answer losses)."""
    pipe = _open(home)
    serving = pipe.registry.serving()
    shown = ("forget_loss", "retain_loss") if pipe.config.is_lm else ("forget_acc", "test_acc")
    digits = 3 if pipe.config.is_lm else 1
    table = Table("version", "serving", "parent", "method", "rows", *shown, "sha256")
    broken = pipe.registry.check() if check else {}
    for v in pipe.registry.versions():
        card = pipe.registry.card(v)
        m = card.get("metrics", {})
        table.add_row(
            v, "*" if v == serving else "", str(card.get("parent") or ""), card.get("method", ""),
            str(card.get("data", {}).get("rows", "")), *(_num(m.get(name), digits) for name in shown),
            broken.get(v) or card.get("sha256", "")[:12],
        )  # fmt: skip
    console.print(table)
    if any(broken.values()):
        _fail("; ".join(e for e in broken.values() if e))


@pipeline_app.command("check")
def check_cmd(home: Path = HomeOpt) -> None:
    """Cross-check ledger, registry and audit log: signatures, hashes, and requests done <->
    versions <-> forgotten rows <-> audit entries. Prints each mismatch; exits 1 if there is any."""
    pipe = _open(home)
    from obliviate.pipeline.integrity import check

    problems = check(pipe)
    for problem in problems:
        err_console.print(f"mismatch: {problem}", markup=False)
    if problems:
        raise typer.Exit(1)
    counts = pipe.ledger.counts()
    console.print(
        f"pipeline consistent: {len(pipe.registry.history())} versions, {len(pipe.audit.entries())} audit entries, "
        f"{counts['done']} requests done"
    )


def _num(v, digits: int = 1) -> str:
    return "" if v is None else f"{v:.{digits}f}"


def serve(
    home: Path = HomeOpt,
    host: str = typer.Option("127.0.0.1", help="interface to listen on"),
    port: int = typer.Option(8000),
    token: str = typer.Option(None, envvar="OBLIVIATE_TOKEN", help="bearer token clients must send (env)"),
) -> None:
    """Run the HTTP service (submit, query, models, audit; OpenAPI at /docs)."""
    from obliviate.extras import need

    uvicorn = need("uvicorn", "serve")
    need("fastapi", "serve")
    from obliviate.pipeline.service import create_app

    if not token:
        _fail("set a token with --token or OBLIVIATE_TOKEN; the service refuses to run open")
    uvicorn.run(create_app(home, token), host=host, port=port, log_level="info")


pipeline_app.command("serve")(serve)
app.command("serve")(serve)
app.command("process")(process_cmd)


@audit_app.command("verify")
def verify(home: Path = HomeOpt) -> None:
    """Check the audit log's hash chain, its signatures and the ledger's copy of its hashes;
    reports the first broken entry and exits 1 if any."""
    pipe = _open(home)
    from obliviate.pipeline.integrity import IntegrityError, verify_audit

    result = pipe.audit.verify()
    if not result.ok:
        err_console.print(f"audit chain BROKEN at entry {result.broken_at} of {result.entries}: {result.problem}")
        raise typer.Exit(1)
    try:
        verify_audit(pipe)
    except IntegrityError as exc:
        err_console.print(f"audit chain BROKEN: {exc}")
        raise typer.Exit(1) from None
    console.print(f"audit chain intact: {result.entries} entries")


@audit_app.command("show")
def show(home: Path = HomeOpt, batch_id: str = typer.Argument(..., help="batch id")) -> None:
    """Print one batch's audit record (also under HOME/audit/records/ as JSON and HTML)."""
    console.print_json(json.dumps(_open(home).audit.record(batch_id), allow_nan=True))


__all__ = ["audit_app", "pipeline_app"]
