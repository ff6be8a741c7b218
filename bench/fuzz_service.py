"""Schema-driven fuzzing of the deletion service with schemathesis.

A real uvicorn server on 127.0.0.1 serves a fresh digits pipeline; schemathesis reads its
OpenAPI schema and draws requests for every operation, both schema-valid (positive) and
schema-violating (negative), sent with the bearer token. Counted: requests sent, requests that
reached a handler (the handlers' first call into the pipeline is wrapped with a counter),
status codes, 5xx responses and response bodies that contain a traceback. The target is
0 server errors and 0 tracebacks with at least 5,000 requests reaching the handlers.

    PYTHONPATH=src python bench/fuzz_service.py [--examples 700]
"""

from __future__ import annotations

import argparse
import collections
import os
import socket
import sys
import tempfile
import threading
import time
from pathlib import Path

import schemathesis
import torch
import uvicorn
from hypothesis import HealthCheck, given, settings

from obliviate import TrainConfig
from obliviate.pipeline import DataSource, Pipeline, PipelineConfig
from obliviate.pipeline.service import create_app

TOKEN = "fuzz-token"


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _count_handler_entries(pipe: Pipeline, counter: collections.Counter) -> None:
    """Wrap the pipeline calls each handler makes first, so entries into handlers are counted."""

    def wrap(obj, name: str) -> None:
        inner = getattr(obj, name)

        def counted(*args, **kwargs):
            counter[name] += 1
            return inner(*args, **kwargs)

        setattr(obj, name, counted)

    wrap(pipe, "submit")
    for name in ("get", "list"):
        wrap(pipe.ledger, name)
    wrap(pipe.registry, "serving")
    wrap(pipe.audit, "record")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=900, help="examples per operation and generation mode")
    args = parser.parse_args()
    torch.set_num_threads(1)
    os.environ.setdefault("OBLIVIATE_KEY_DIR", tempfile.mkdtemp(prefix="fuzz-keys-"))
    home = Path(tempfile.mkdtemp(prefix="fuzz-")) / "home"
    config = PipelineConfig(
        dataset=DataSource(name="digits", source="digits"),
        architecture_kwargs={"hidden": [16]},
        recipe=TrainConfig(epochs=1),
    )
    Pipeline.create(home, config).close()
    app = create_app(home, TOKEN)
    entries: collections.Counter = collections.Counter()
    _count_handler_entries(app.state.pipeline, entries)
    port = _port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="error"))
    threading.Thread(target=server.run, daemon=True).start()
    while not server.started:
        time.sleep(0.05)
    base = f"http://127.0.0.1:{port}"
    schema = schemathesis.openapi.from_url(f"{base}/openapi.json")
    statuses: collections.Counter = collections.Counter()
    failures: list[str] = []
    sent = 0
    start = time.perf_counter()
    for result in schema.get_all_operations():
        operation = result.ok()
        for mode in schemathesis.GenerationMode:

            @given(case=operation.as_strategy(generation_mode=mode))
            @settings(max_examples=args.examples, deadline=None, database=None,
                      suppress_health_check=list(HealthCheck))  # fmt: skip
            def fuzz(case) -> None:
                nonlocal sent
                response = case.call(base_url=base, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=30)
                sent += 1
                statuses[response.status_code] += 1
                body = response.text
                if response.status_code >= 500 or "Traceback (most recent call last)" in body:
                    failures.append(f"{case.method} {case.formatted_path} -> {response.status_code}: {body[:200]}")

            before = sent
            try:
                fuzz()
                note = ""
            except Exception as exc:  # nothing to generate, e.g. no way to violate a schema without inputs
                note = f" (generation stopped: {type(exc).__name__})"
            print(f"{operation.label:28s} {mode.value:8s} {sent - before:5d} requests{note}", flush=True)
    seconds = time.perf_counter() - start
    server.should_exit = True
    reached = sum(entries.values())
    print(
        f"\nfuzzing: {sent} requests in {seconds:.0f}s, {reached} reached the handlers "
        f"({dict(sorted(entries.items()))})"
    )
    print(f"status codes: {dict(sorted(statuses.items()))}")
    server_errors = sum(n for code, n in statuses.items() if code >= 500)
    tracebacks = sum("Traceback (most recent call last)" in f for f in failures)
    print(f"5xx responses: {server_errors}; bodies with a traceback: {tracebacks}")
    for line in failures[:10]:
        print("  " + line)
    sys.exit(1 if failures or reached < 5000 else 0)


if __name__ == "__main__":
    main()
