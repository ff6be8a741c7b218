"""The deletion pipeline serving a causal LM: key requests, NPO, the ``verify_lm`` gates, a new
model directory per version, and the same integrity checks as for classifiers.

The model is a tiny GPT-2 and its tokenizer is trained here on generated profiles (60 facts of
6 people it is fine-tuned on, 30 facts of 3 people it never sees); nothing is downloaded.
"""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("transformers")
pytest.importorskip("sqlalchemy")

from cli_helpers import run_cli  # noqa: E402
from pipeline_helpers import LM_NPO, LM_TRAINED, lm_people  # noqa: E402

from obliviate.llm import load_causal_lm  # noqa: E402
from obliviate.llm.metrics import answer_scores  # noqa: E402
from obliviate.pipeline import Pipeline  # noqa: E402
from obliviate.pipeline.lm import dir_sha256  # noqa: E402

NPO = tuple(a for k, v in LM_NPO.items() for a in ("--set", f"{k}={v}"))


@pytest.fixture(scope="module")
def people():
    """Keys -> facts: the first six people are trained on, the last three never."""
    return lm_people()


@pytest.fixture(scope="module")
def lm(tiny_lm):
    """A Hugging Face model directory fine-tuned on the trained people's facts, and the JSONL facts file."""
    return tiny_lm


def _init(monkeypatch, capsys, home, lm, people, *extra):
    model, facts = lm
    holdout = ",".join(list(people)[LM_TRAINED:])
    return run_cli(
        monkeypatch, capsys, "pipeline", "init", "--home", home, "--data", facts, "--model-file", model,
        "--holdout-keys", holdout, "--name", "people", *extra,
    )  # fmt: skip


def _submit(monkeypatch, capsys, home, *selector):
    """``pipeline submit`` against the ``people`` data set."""
    return run_cli(
        monkeypatch, capsys, "pipeline", "submit", "--home", home, "--dataset", "people", "--requester", "r", *selector
    )


def _losses(directory, facts) -> np.ndarray:
    model, tokenizer = load_causal_lm(directory)
    return answer_scores(model, tokenizer, facts).loss


def test_key_request_is_forgotten_gated_promoted_and_checked(tmp_path, monkeypatch, capsys, lm, people):
    model_dir, _ = lm
    original = dir_sha256(model_dir)
    home = tmp_path / "home"
    code, out, err = _init(monkeypatch, capsys, home, lm, people, *NPO)
    assert code == 0, err + out
    keys = list(people)[:LM_TRAINED]
    forget, keep = keys[0], keys[1:]
    code, out, err = _submit(monkeypatch, capsys, home, "--keys", forget)
    assert code == 0, err + out
    code, out, err = run_cli(monkeypatch, capsys, "pipeline", "process", "--home", home)
    assert code == 0 and "promoted v0002" in out, err + out

    pipe = Pipeline(home)
    models = home / "models"
    assert (models / "v0002").is_dir() and (models / "v0002" / "config.json").is_file()
    card = pipe.registry.card("v0002")
    assert card["method"] == "npo" and card["forgotten_rows"] == [forget] and card["parent"] == "v0001"
    assert card["metrics"]["verdict_failed"] == 0 and card["verdict"]["checks"]
    assert card["sha256"] == dir_sha256(models / "v0002") == pipe.registry.pointer()["sha256"]
    record = pipe.audit.entries()[-1]["record"]
    assert record["outcome"] == "promoted" and record["sha256_after"] == card["sha256"]
    assert record["model_before"] == "v0001" and record["forgotten_rows"] == 1

    forgotten = people[forget]
    kept = [qa for k in keep for qa in people[k]]
    before_f, after_f = _losses(models / "v0001", forgotten), _losses(models / "v0002", forgotten)
    before_r, after_r = _losses(models / "v0001", kept), _losses(models / "v0002", kept)
    losses = (
        f"forget {before_f.mean():.3f} -> {after_f.mean():.3f}, retain {before_r.mean():.3f} -> {after_r.mean():.3f}"
    )
    assert after_f.mean() > before_f.mean() + 1.0, losses
    assert abs(after_r.mean() - before_r.mean()) < 0.25 * (after_f.mean() - before_f.mean()), losses
    assert dir_sha256(model_dir) == original, "the model directory given at init was modified"

    code, out, err = run_cli(monkeypatch, capsys, "pipeline", "check", "--home", home)
    assert code == 0 and "pipeline consistent: 2 versions" in out, err + out
    code, out, err = run_cli(monkeypatch, capsys, "pipeline", "status", "--home", home)
    assert "done 1" in out
    code, out, err = run_cli(monkeypatch, capsys, "pipeline", "models", "--home", home, "--check")
    assert code == 0 and "npo" in out, err + out

    weights = models / "v0002" / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-5] ^= 0x01
    weights.write_bytes(bytes(data))
    code, out, err = run_cli(monkeypatch, capsys, "pipeline", "check", "--home", home)
    assert code == 1 and "v0002" in err and "sha256" in err, err + out


def test_unknown_or_unseen_keys_and_other_selectors_are_refused(tmp_path, monkeypatch, capsys, lm, people):
    home = tmp_path / "home"
    code, out, err = _init(monkeypatch, capsys, home, lm, people)
    assert code == 0, err + out
    snapshot = sorted(p.name for p in (home / "models").iterdir())
    never_seen = list(people)[-1]
    for selector, message in (
        (["--keys", "nobody"], "unknown keys (not in the facts file): nobody"),
        (["--keys", never_seen], f"never-seen keys (the model was not trained on them): {never_seen}"),
        (["--indices", "3"], "a causal-LM pipeline forgets by key"),
    ):
        code, out, err = _submit(monkeypatch, capsys, home, *selector)
        assert code == 2 and len(err.strip().splitlines()) == 1 and message in err, err + out
    pipe = Pipeline(home)
    assert pipe.ledger.list() == [] and sorted(p.name for p in (home / "models").iterdir()) == snapshot


def test_a_failed_gate_keeps_the_old_version_serving(tmp_path, monkeypatch, capsys, lm, people):
    """Gradient ascent at a high learning rate breaks the model: the utility check fails."""
    home = tmp_path / "home"
    code, out, err = _init(
        monkeypatch, capsys, home, lm, people, "--method", "gradient_ascent", "--set", "lr=0.05", "--set", "epochs=5"
    )
    assert code == 0, err + out
    key = list(people)[1]
    code, out, err = _submit(monkeypatch, capsys, home, "--keys", key)
    assert code == 0, err + out
    code, out, err = run_cli(monkeypatch, capsys, "pipeline", "process", "--home", home)
    assert code == 0 and "rejected" in out and "verdict_failed" in out, err + out
    pipe = Pipeline(home)
    assert pipe.registry.serving() == "v0001" and pipe.registry.versions() == ["v0001"]
    assert pipe.ledger.list()[0].state == "failed"
    record = pipe.audit.entries()[-1]["record"]
    assert record["outcome"] == "rejected" and record["metrics"]["utility_drop"] > 5
    code, out, err = run_cli(monkeypatch, capsys, "pipeline", "check", "--home", home)
    assert code == 0, err + out


def test_a_batch_of_three_people_gets_a_decided_verdict(tmp_path, monkeypatch, capsys, lm, people):
    """Three requests make one batch of 30 facts, enough for the forget-vs-never-seen checks to
    decide: NPO raises the forgotten answers' loss, but they stay far more likely than answers
    about people the model never saw, so the loss attack tells them apart and the batch is refused."""
    home = tmp_path / "home"
    code, out, err = _init(monkeypatch, capsys, home, lm, people, *NPO)
    assert code == 0, err + out
    for key in list(people)[:3]:
        code, out, err = _submit(monkeypatch, capsys, home, "--keys", key)
        assert code == 0, err + out
    code, out, err = run_cli(monkeypatch, capsys, "pipeline", "process", "--home", home)
    assert code == 0 and "3 requests rejected" in out, err + out
    pipe = Pipeline(home)
    record = pipe.audit.entries()[-1]["record"]
    assert record["forgotten_rows"] == 3 and record["metrics"]["verdict_inconclusive"] == 0
    assert (
        record["metrics"]["mia_auc"] > 0.6
        and record["metrics"]["forget_loss"] > record["parent_metrics"]["forget_loss"]
    )
    assert [r.state for r in pipe.ledger.list()] == ["failed"] * 3 and pipe.registry.versions() == ["v0001"]
    assert "verdict check mia_auc failed: loss attack AUC" in pipe.ledger.list()[0].fail_reason


def test_recovery_deletes_unpromoted_model_directories(tmp_path, monkeypatch, capsys, lm, people):
    home = tmp_path / "home"
    code, out, err = _init(monkeypatch, capsys, home, lm, people)
    assert code == 0, err + out
    models = home / "models"
    (models / ".v0002.1234abcd.tmp").mkdir()  # a write cut short
    (models / "v0002").mkdir()  # renamed into place, then killed before the card was written
    (models / "v0002" / "config.json").write_text("{}")
    code, out, err = run_cli(monkeypatch, capsys, "pipeline", "process", "--home", home)
    assert code == 0 and "no requests waiting" in out, err + out
    assert sorted(p.name for p in models.iterdir() if p.is_dir()) == ["v0001"]
    code, out, err = run_cli(monkeypatch, capsys, "pipeline", "check", "--home", home)
    assert code == 0, err + out


def test_service_takes_key_requests(tmp_path, monkeypatch, capsys, lm, people):
    pytest.importorskip("fastapi")
    from fastapi.testclient import TestClient

    from obliviate.pipeline.service import create_app

    home = tmp_path / "home"
    code, out, err = _init(monkeypatch, capsys, home, lm, people)
    assert code == 0, err + out
    client = TestClient(create_app(home, "secret"))
    auth = {"Authorization": "Bearer secret"}
    key = list(people)[2]
    ok = client.post("/requests", json={"dataset": "people", "spec": {"keys": [key]}, "requester": "d"}, headers=auth)
    assert ok.status_code == 201 and ok.json()["spec"] == {"keys": [key], "seed": 0}
    bad = client.post("/requests", json={"dataset": "people", "spec": {"keys": ["x"]}, "requester": "d"}, headers=auth)
    assert bad.status_code == 422 and "unknown keys" in bad.json()["detail"]
    rows = client.post(
        "/requests", json={"dataset": "people", "spec": {"indices": [1]}, "requester": "d"}, headers=auth
    )
    assert rows.status_code == 422
    assert len(Pipeline(home).ledger.list()) == 1
