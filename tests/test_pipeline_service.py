"""The HTTP service on a real uvicorn server on 127.0.0.1: auth, validation, and a concurrent load test."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
import uvicorn
from pipeline_helpers import DB_KINDS, PERMISSIVE, db_url, new_pipeline

from obliviate.pipeline import process
from obliviate.pipeline.service import Guard, create_app

TOKEN = "test-token-123"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
CLIENTS = int(os.environ.get("OBLIVIATE_LOAD_CLIENTS", "8"))
PER_CLIENT = int(os.environ.get("OBLIVIATE_LOAD_REQUESTS", "1000")) // CLIENTS  # issue #15: 64 x 10,000


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module", params=DB_KINDS)
def server(request, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("svc")
    pipe = new_pipeline(tmp / "home", gates=PERMISSIVE, database=db_url(request.param, tmp))
    app = create_app(pipe.home, TOKEN, max_body=64 * 1024)
    port = _free_port()
    limit = max(64, CLIENTS + 16)
    srv = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", limit_concurrency=limit))
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not srv.started:
        assert time.monotonic() < deadline, "server did not start"
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}", app.state.pipeline
    srv.should_exit = True
    thread.join(10)


def test_auth_required_and_openapi_served(server):
    url, _ = server
    assert httpx.get(f"{url}/health").status_code == 200
    body = {"dataset": "digits", "spec": {"indices": [1]}, "requester": "eve"}
    assert httpx.post(f"{url}/requests", json=body).status_code == 401
    assert httpx.post(f"{url}/requests", json=body, headers={"Authorization": "Bearer wrong"}).status_code == 401
    assert httpx.get(f"{url}/models").status_code == 401
    schema = httpx.get(f"{url}/openapi.json").json()
    assert {"/requests", "/requests/{request_id}", "/models", "/audit/{batch_id}"} <= set(schema["paths"])


@pytest.mark.parametrize(
    ("body", "status", "detail"),
    [
        ({"dataset": "digits", "spec": {"indices": [5, 100000]}, "requester": "m"}, 422, "less than 1438"),
        ({"dataset": "digits", "spec": {"indices": [3, 3]}, "requester": "m"}, 422, "duplicate"),
        ({"dataset": "cifar10", "spec": {"indices": [5]}, "requester": "m"}, 422, "Input should be 'digits'"),
        ({"dataset": "digits", "spec": {"classes": [42]}, "requester": "m"}, 422, "less than 10"),
        ({"dataset": "digits", "spec": {"indices": [1], "classes": [2]}, "requester": "m"}, 422, "exactly one"),
        ({"dataset": "digits", "spec": {"rows": [1]}, "requester": "m"}, 422, "exactly one"),
        ({"dataset": "digits", "spec": {"indices": [1], "rows": [1]}, "requester": "m"}, 422, "Extra inputs"),
        # issue #15: each of these was a 500 (and a dropped keep-alive connection)
        ({"dataset": "digits", "spec": {"indices": [2**63]}, "requester": "m"}, 422, "less than 1438"),
        ({"dataset": "digits", "spec": {"fraction": 0.1, "seed": 2**64}, "requester": "m"}, 422, "seed"),
        ({"dataset": "digits", "spec": {"keys": [2**70]}, "requester": "m"}, 422, "keys"),
        ({"dataset": "digits", "spec": {"indices": [1]}, "requester": "\ud800"}, 422, "unicode"),
        ({"dataset": "digits", "spec": {"keys": ["\ud800"]}, "requester": "m"}, 422, "unicode"),
        ({"dataset": "digits", "spec": {"indices": [1]}, "requester": "m", "reason": "\udfff"}, 422, "unicode"),
        ({"dataset": "digits", "spec": {"indices": [1]}}, 422, "requester"),
        ({"dataset": "digits", "spec": {"indices": [1]}, "requester": "m", "admin": True}, 422, "Extra inputs"),
        ({"dataset": "digits", "spec": {"indices": list(range(20000))}, "requester": "m"}, 413, "larger than"),
    ],
)
def test_bad_input_gets_4xx_and_changes_nothing(server, body, status, detail):
    url, pipe = server
    before = pipe.ledger.counts()
    raw = json.dumps(body)  # ASCII escapes, so lone surrogates travel as JSON allows
    r = httpx.post(f"{url}/requests", content=raw, headers={**AUTH, "Content-Type": "application/json"})
    assert r.status_code == status and detail in str(r.json()["detail"])
    assert pipe.ledger.counts() == before


@pytest.mark.parametrize(
    "raw",
    [
        b'{"dataset": "digits", "spec": {"indices": [1]}, "requester": NaN}',
        b'{"dataset": "digits", "spec": {"fraction": NaN}, "requester": "m"}',
        b'{"dataset": "digits", "spec": {"target_range": [Infinity, 1]}, "requester": "m"}',
        b'{"dataset": "digits", "spec": {"indices": [1]}, "requester": "\\ud800"}',
        b'{"dataset": "digits", "spec": {"indices": [99999999999999999999999]}, "requester": "m"}',
    ],
)
def test_json_the_standard_forbids_gets_422_on_a_kept_connection(server, raw):
    url, pipe = server
    before = pipe.ledger.counts()
    with httpx.Client(base_url=url, headers={**AUTH, "Content-Type": "application/json"}) as http:
        r = http.post("/requests", content=raw)
        assert r.status_code == 422 and len(r.json()["detail"].splitlines()) == 1, r.text
        assert "Traceback" not in r.text
        assert http.get("/health").status_code == 200  # the same keep-alive connection still serves
    assert pipe.ledger.counts() == before


def test_chunked_body_over_the_limit_gets_413(server):
    url, pipe = server
    before = pipe.ledger.counts()
    chunks = (b" " * 16384 for _ in range(8))  # no Content-Length: sent chunked
    r = httpx.post(f"{url}/requests", content=chunks, headers={**AUTH, "Content-Type": "application/json"})
    assert r.status_code == 413 and "larger than" in r.json()["detail"]
    assert pipe.ledger.counts() == before


def test_token_is_checked_before_the_body_is_read():
    reads, sent = [], []

    async def app(scope, receive, send):  # pragma: no cover - must not be reached
        raise AssertionError("an unauthorised request reached the app")

    async def receive():
        reads.append(1)
        return {"type": "http.request", "body": b"x" * 1000, "more_body": True}

    async def send(message):
        sent.append(message)

    guard = Guard(app, token=TOKEN, limit=1 << 20)
    for auth in ([], [(b"authorization", b"Bearer wrong")], [(b"authorization", b"Basic " + TOKEN.encode())]):
        scope = {"type": "http", "path": "/requests", "method": "POST", "headers": auth}
        asyncio.run(guard(scope, receive, send))
    assert not reads and [m["status"] for m in sent if m["type"] == "http.response.start"] == [401, 401, 401]


def test_openapi_schema_constrains_dataset_and_spec(server):
    url, _ = server
    schema = httpx.get(f"{url}/openapi.json").json()
    body = schema["components"]["schemas"]["SubmitBody"]["properties"]
    assert body["dataset"].get("const") == "digits" or body["dataset"].get("enum") == ["digits"]
    spec = schema["components"]["schemas"]["IndicesSpec"]["properties"]["indices"]
    assert spec["items"]["maximum" if "maximum" in spec["items"] else "exclusiveMaximum"] in (1437, 1438)
    assert "oneOf" in body["spec"] or "anyOf" in body["spec"]


def test_malformed_json_and_unknown_ids(server):
    url, pipe = server
    before = pipe.ledger.counts()
    r = httpx.post(
        f"{url}/requests",
        content=b'{"dataset": "digits", "spec": {',
        headers={**AUTH, "Content-Type": "application/json"},
    )
    assert r.status_code == 422
    assert httpx.get(f"{url}/requests/doesnotexist", headers=AUTH).status_code == 404
    assert httpx.get(f"{url}/audit/doesnotexist", headers=AUTH).status_code == 404
    assert httpx.get(f"{url}/requests?state=pending", headers=AUTH).status_code == 422
    assert pipe.ledger.counts() == before


def test_submit_query_process_models_audit(server):
    url, pipe = server
    body = {"dataset": "digits", "spec": {"indices": [10, 11]}, "requester": "ann", "client_key": "flow-1"}
    r = httpx.post(f"{url}/requests", json=body, headers=AUTH)
    assert r.status_code == 201 and r.json()["state"] == "received"
    rid = r.json()["id"]
    again = httpx.post(f"{url}/requests", json=body, headers=AUTH)
    assert again.status_code == 200 and again.json()["id"] == rid
    clash = httpx.post(f"{url}/requests", json={**body, "spec": {"indices": [12]}}, headers=AUTH)
    assert clash.status_code == 409
    process(pipe, wait=True)
    state = httpx.get(f"{url}/requests/{rid}", headers=AUTH).json()
    assert state["state"] == "done" and state["model_version"]
    models = httpx.get(f"{url}/models", headers=AUTH).json()
    assert models["serving"] == state["model_version"] and len(models["versions"]) >= 2
    record = httpx.get(f"{url}/audit/{state['batch_id']}", headers=AUTH).json()
    assert rid in record["record"]["request_ids"] and record["record"]["sha256_after"]


def test_load_1000_requests_from_8_clients_none_lost_or_duplicated(server):
    url, pipe = server
    before = len(pipe.ledger.list())
    n_rows = len(pipe.split.train)

    def client(c: int) -> dict[str, str]:
        ids = {}
        with httpx.Client(base_url=url, headers=AUTH, timeout=60) as http:
            for j in range(PER_CLIENT):
                key = f"load-{c}-{j}"
                body = {"dataset": "digits", "spec": {"indices": [(c * PER_CLIENT + j) % n_rows]},
                        "requester": f"client{c}", "client_key": key}  # fmt: skip
                r = http.post("/requests", json=body)
                assert r.status_code == 201, r.text
                ids[key] = r.json()["id"]
                if j % 10 == 0:  # a client retrying after a lost reply: same key, same request
                    again = http.post("/requests", json=body)
                    assert again.status_code == 200 and again.json()["id"] == ids[key]
        return ids

    start = time.perf_counter()
    with ThreadPoolExecutor(CLIENTS) as pool:
        results = list(pool.map(client, range(CLIENTS)))
    seconds = time.perf_counter() - start
    returned = {k: v for r in results for k, v in r.items()}
    stored = [r for r in pipe.ledger.list() if r.client_key and r.client_key.startswith("load-")]
    assert len(returned) == CLIENTS * PER_CLIENT == len(set(returned.values()))
    assert len(stored) == CLIENTS * PER_CLIENT and len(pipe.ledger.list()) == before + CLIENTS * PER_CLIENT
    assert {r.client_key: r.id for r in stored} == returned, "every acknowledged request is stored exactly once"
    print(f"\nload: {CLIENTS * PER_CLIENT} requests (+{CLIENTS * -(-PER_CLIENT // 10)} retries) from {CLIENTS} clients "
          f"in {seconds:.1f}s, lost 0, duplicated 0")  # fmt: skip
