"""The request ledger: state machine, atomic conditional transitions, idempotent submission."""

from __future__ import annotations

import threading

import pytest
from pipeline_helpers import DB_KINDS, db_url

from obliviate.pipeline.ledger import ConflictError, Ledger, LedgerError

SPEC = {"indices": [1, 2, 3]}


@pytest.fixture(params=DB_KINDS)
def ledger(request, tmp_path):
    led = Ledger(db_url(request.param, tmp_path))
    yield led
    led.close()


def test_submit_and_state_machine(ledger):
    req, created = ledger.submit("digits", SPEC, "alice", "gdpr art. 17")
    assert created and req.state == "received" and req.attempts == 0
    batch, claimed = ledger.claim(10)
    assert [r.id for r in claimed] == [req.id] and claimed[0].state == "scheduled" and claimed[0].attempts == 1
    assert ledger.move(batch, "scheduled", "running") == 1
    assert ledger.move(batch, "scheduled", "running") == 0, "a second identical transition must not apply"
    assert ledger.move(batch, "running", "failed", fail_reason="gate failed") == 1
    failed = ledger.get(req.id)
    assert failed.state == "failed" and failed.fail_reason == "gate failed"
    assert ledger.retry(req.id).state == "received"
    with pytest.raises(LedgerError, match="only failed requests"):
        ledger.retry(req.id)
    batch2, _ = ledger.claim(10)
    ledger.move(batch2, "scheduled", "running")
    ledger.move(batch2, "running", "done", model_version="v0002")
    done = ledger.get(req.id)
    assert done.state == "done" and done.model_version == "v0002" and done.attempts == 2
    with pytest.raises(LedgerError, match="not allowed"):
        ledger.move(batch2, "done", "received")
    assert ledger.counts() == {"received": 0, "scheduled": 0, "running": 0, "done": 1, "failed": 0}


def test_idempotent_submission_by_client_key(ledger):
    first, created = ledger.submit("digits", SPEC, "alice", client_key="k-1")
    again, created_again = ledger.submit("digits", {"indices": [1, 2, 3]}, "alice", client_key="k-1")
    assert created and not created_again and again.id == first.id
    with pytest.raises(ConflictError, match="k-1"):
        ledger.submit("digits", {"indices": [4]}, "alice", client_key="k-1")
    assert len(ledger.list()) == 1


def test_unknown_request_and_state(ledger):
    with pytest.raises(LedgerError, match="no request"):
        ledger.get("nope")
    with pytest.raises(LedgerError, match="unknown state"):
        ledger.list(state="pending")


def test_concurrent_claims_split_the_queue(ledger):
    for i in range(40):
        ledger.submit("digits", {"indices": [i]}, "bob")
    got: list[list[str]] = []
    lock = threading.Lock()

    def claimer():
        while True:
            _, reqs = ledger.claim(3)
            if not reqs:
                return
            with lock:
                got.append([r.id for r in reqs])

    threads = [threading.Thread(target=claimer) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    ids = [i for batch in got for i in batch]
    assert len(ids) == 40 and len(set(ids)) == 40, "every request claimed exactly once"
    assert ledger.counts()["scheduled"] == 40
