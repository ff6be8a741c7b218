"""SIGKILL the processor at random moments; after restart every request is done exactly once or
pending/failed, ledger and registry agree, and the serving model loads and matches its hash.

The processor runs in a forked child (a real separate process, killed with SIGKILL, with no
interpreter start-up cost per trial); the parent then recovers and checks every invariant.
"""

from __future__ import annotations

import os
import random
import signal
import time

import pytest
from pipeline_helpers import check_consistency, new_pipeline

from obliviate.pipeline import Pipeline, process, recover
from obliviate.pipeline.processor import processing_lock

TRIALS = 24


def _run_child(home) -> int:
    pid = os.fork()
    if pid == 0:  # child: a processor like 'obliviate pipeline process'
        code = 1
        try:
            pipe = Pipeline(home)
            process(pipe, wait=True)
            code = 0
        finally:
            os._exit(code)
    return pid


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_sigkill_at_random_points_never_loses_or_duplicates(tmp_path):
    home = tmp_path / "home"
    # Gates that pass and fail both occur: class batches are gated on forgetting the class.
    pipe = new_pipeline(home, gates=["random: forget_acc <= 100", "class: forget_acc <= 50"], batch_size=3)
    rng = random.Random(0)
    pipe.submit("digits", {"indices": [0, 1, 2]}, "warmup")
    pipe.close()
    start = time.perf_counter()  # one uninterrupted child run sets the window kills are drawn from
    assert os.waitpid(_run_child(home), 0)[1] == 0
    child_seconds = time.perf_counter() - start
    stats = {"killed_mid_batch": 0, "rolled_forward": 0, "rolled_back": 0, "versions_discarded": 0, "finished": 0}
    for trial in range(TRIALS):
        pipe = Pipeline(home)
        for _ in range(rng.randint(1, 4)):
            spec = {"classes": [rng.randrange(10)]} if rng.random() < 0.15 else {
                "indices": rng.sample(range(1400), rng.randint(1, 5))}  # fmt: skip
            pipe.submit("digits", spec, f"trial{trial}", client_key=f"t{trial}-{rng.random()}")
        pipe.close()
        pid = _run_child(home)
        time.sleep(rng.uniform(0, 1.5 * child_seconds))
        os.kill(pid, signal.SIGKILL)
        _, status = os.waitpid(pid, 0)
        pipe = Pipeline(home)
        if os.WIFEXITED(status):
            stats["finished"] += 1
        if pipe.ledger.open_batches():
            stats["killed_mid_batch"] += 1
        with processing_lock(home, wait=True):
            repaired = recover(pipe)
        stats["rolled_forward"] += len(repaired["rolled_forward"])
        stats["rolled_back"] += len(repaired["rolled_back"])
        stats["versions_discarded"] += len(repaired["discarded_versions"])
        check_consistency(pipe)
        pipe.close()
    pipe = Pipeline(home)
    process(pipe)
    counts = check_consistency(pipe)
    assert counts["received"] == 0 and counts["done"] + counts["failed"] == len(pipe.ledger.list())
    assert stats["killed_mid_batch"] >= 5, f"kills should land inside batches: {stats}"
    print(
        f"\nfaults: {TRIALS} SIGKILL trials, child run {child_seconds:.2f}s, {stats}, final {counts}, lost 0, twice 0"
    )
