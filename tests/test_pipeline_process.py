"""Processing end to end on digits with a tiny MLP: batching, gates, promotion, audit, retries, CLI."""

from __future__ import annotations

import json
import sys

import pytest
import torch
from cli_helpers import run_cli
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pipeline_helpers import (
    DB_KINDS,
    KINDS,
    LM_PERMISSIVE,
    PERMISSIVE,
    RECIPE,
    check_consistency,
    config,
    db_url,
    digits_train,
    lm_people,
    new_lm_pipeline,
    new_pipeline,
)
from sklearn.datasets import load_digits

from obliviate.cli import main
from obliviate.forget import ForgetSpec
from obliviate.pipeline import DataSource, Pipeline, PipelineConfig, RequestError, UnknownDatasetError, process
from obliviate.pipeline.audit import rows_sha256
from obliviate.pipeline.batching import plan_batch
from obliviate.training import accuracy

CLASS3 = {"classes": [3]}


@pytest.mark.parametrize("db", DB_KINDS)
def test_class_request_is_forgotten_promoted_and_audited(tmp_path, db):
    pipe = new_pipeline(tmp_path / "home", method="gradient_ascent", method_config={}, database=db_url(db, tmp_path))
    req, _ = pipe.submit("digits", CLASS3, "alice", "GDPR art. 17")
    [outcome] = process(pipe)
    assert outcome.outcome == "promoted", outcome.reasons
    done = pipe.ledger.get(req.id)
    assert done.state == "done" and done.model_version == "v0002" == pipe.registry.serving()
    _, model, card = pipe.registry.load_serving()
    parent_card = pipe.registry.card("v0001")
    assert card["parent"] == "v0001" and card["method"] == "gradient_ascent" and card["request_ids"] == [req.id]
    rows = ForgetSpec(classes=[3]).resolve(digits_train()).tolist()
    assert card["forgotten_rows"] == rows and card["data"]["rows"] == parent_card["data"]["rows"] - len(rows)
    # It forgets (class 3 no longer recognised) and keeps the rest (retain accuracy within 10 points).
    assert card["metrics"]["forget_acc"] <= 5.0 < card["parent_metrics"]["forget_acc"] - 80
    assert card["metrics"]["retain_acc"] >= card["parent_metrics"]["retain_acc"] - 10
    keep = digits_train().subset(torch.nonzero(digits_train().y != 3).flatten())
    assert accuracy(model, keep) >= 85
    record = pipe.audit.record(outcome.batch_id)["record"]
    assert record["request_ids"] == [req.id] and record["outcome"] == "promoted"
    assert record["sha256_before"] == parent_card["sha256"] and record["sha256_after"] == card["sha256"]
    assert record["forgotten_rows_sha256"] == rows_sha256(rows) and record["metrics"] == card["metrics"]
    assert (pipe.audit.records / f"{outcome.batch_id}.html").exists()
    check_consistency(pipe)


def test_failed_gate_keeps_serving_version_and_retry_succeeds(tmp_path):
    pipe = new_pipeline(tmp_path / "home")  # finetune, 1 epoch, default gates
    req, _ = pipe.submit("digits", {"indices": list(range(0, 600, 6))}, "bob")
    [outcome] = process(pipe)
    # One epoch of fine-tuning does not make random training rows look unseen: the default
    # gate (forget accuracy at most test accuracy + 2) refuses it.
    assert outcome.outcome == "rejected" and "forget_acc" in outcome.reasons[0], outcome
    failed = pipe.ledger.get(req.id)
    assert failed.state == "failed" and "forget_acc <= test_acc + 2" in failed.fail_reason
    assert pipe.registry.serving() == "v0001" and pipe.registry.versions() == ["v0001"]
    assert pipe.audit.entries()[-1]["record"]["outcome"] == "rejected"
    # The operator relaxes the gate; the same request is retried and now goes through.
    cfg = json.loads((pipe.home / "pipeline.json").read_text())
    cfg["gates"] = PERMISSIVE
    (pipe.home / "pipeline.json").write_text(json.dumps(cfg))
    pipe.close()
    pipe = Pipeline(pipe.home)
    pipe.ledger.retry(req.id)
    [again] = process(pipe)
    assert again.outcome == "promoted" and pipe.ledger.get(req.id).state == "done"
    assert pipe.ledger.get(req.id).attempts == 2
    check_consistency(pipe)


def test_batching_and_already_forgotten_rows(tmp_path):
    pipe = new_pipeline(tmp_path / "home", gates=PERMISSIVE, batch_size=4)
    ids = [pipe.submit("digits", {"indices": [i, i + 100]}, "carol")[0].id for i in range(6)]
    outcomes = process(pipe)
    assert [len(o.request_ids) for o in outcomes] == [4, 2]
    assert [o.version for o in outcomes] == ["v0002", "v0003"]
    assert pipe.registry.card("v0003")["data"]["rows"] == len(digits_train()) - 12
    # Rows an earlier batch already removed: nothing to unlearn, done with the serving version.
    dup, _ = pipe.submit("digits", {"indices": [0, 100]}, "carol")
    [noop] = process(pipe)
    assert noop.outcome == "noop" and pipe.ledger.get(dup.id).model_version == "v0003"
    assert pipe.registry.versions() == ["v0001", "v0002", "v0003"]
    counts = check_consistency(pipe)
    assert counts["done"] == 7 and all(pipe.ledger.get(i).state == "done" for i in ids)


def test_mixed_batch_is_split_and_the_class_gated_as_a_class(tmp_path):
    """Issue #15: a class request batched with a row request was merged into row indices and
    promoted while the class stayed recognisable. Kinds are now batched apart, each by its gate."""
    gates = ["random: forget_acc <= 100", "class: forget_acc <= 5"]
    pipe = new_pipeline(tmp_path / "home", method="gradient_ascent", method_config={}, gates=gates, batch_size=8)
    cls, _ = pipe.submit("digits", CLASS3, "ivan")
    rows, _ = pipe.submit("digits", {"indices": [0, 1, 2]}, "ivan")
    more, _ = pipe.submit("digits", {"classes": [5]}, "ivan")
    outcomes = process(pipe)
    assert [o.request_ids for o in outcomes] == [[cls.id, more.id], [rows.id]]
    class_batch = pipe.audit.record(outcomes[0].batch_id)["record"]
    assert class_batch["spec"] == {"classes": [3, 5], "seed": 0}
    assert outcomes[0].outcome == "promoted", outcomes[0].reasons
    model, _ = pipe.registry.load(outcomes[0].version)  # the classes are unrecognised on held-out images
    test = pipe.split.test
    held_out = test.subset(torch.nonzero((test.y == 3) | (test.y == 5)).flatten())
    assert accuracy(model, held_out) <= 5
    check_consistency(pipe)


def test_method_errors_fail_the_batch_with_reason(tmp_path):
    pipe = new_pipeline(tmp_path / "home", method="gradient_ascent", method_config={"lr": 1e6, "stop_accuracy": None})
    req, _ = pipe.submit("digits", CLASS3, "dave")
    [outcome] = process(pipe)
    assert outcome.outcome in {"error", "rejected"}
    assert pipe.ledger.get(req.id).state == "failed" and pipe.ledger.get(req.id).fail_reason
    assert pipe.registry.serving() == "v0001"
    check_consistency(pipe)


def test_exact_mode_serves_a_sisa_ensemble(tmp_path):
    pipe = new_pipeline(tmp_path / "home", mode="exact", sisa={"shards": 3, "slices": 2}, gates=PERMISSIVE)
    req, _ = pipe.submit("digits", {"indices": [7]}, "erin")
    cls, _ = pipe.submit("digits", CLASS3, "erin")
    outcomes = process(pipe)
    assert [o.outcome for o in outcomes] == ["promoted", "promoted"]  # rows and class: two batches
    _, model, card = pipe.registry.load_serving()
    assert card["method"] == "sisa" and len(model.assignment) == len(digits_train()) - len(card["forgotten_rows"])
    assert card["metrics"]["forget_acc"] <= 5.0, "no shard ever saw the forgotten class after exact unlearning"
    assert pipe.ledger.get(req.id).state == pipe.ledger.get(cls.id).state == "done"
    check_consistency(pipe)


def test_config_refuses_unknown_method_and_bad_gate():
    with pytest.raises(ValueError, match="unknown method"):
        PipelineConfig(dataset={"name": "d", "source": "digits"}, method="no_such_method")
    with pytest.raises(ValueError, match="cannot read gate"):
        PipelineConfig(dataset={"name": "d", "source": "digits"}, gates=["forget_acc is small"])


@pytest.fixture(scope="module")
def shared(tmp_path_factory):
    return new_pipeline(tmp_path_factory.mktemp("shared") / "home")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--dataset", "digits", "--indices", "5,99999"], "out of range"),
        (["--dataset", "digits", "--indices", "-1"], "out of range"),
        (["--dataset", "cifar", "--indices", "5"], "unknown data set 'cifar'"),
        (["--dataset", "digits", "--spec", '{"indices": [1,'], "Invalid JSON"),
        (["--dataset", "digits", "--spec", '{"rows": [1]}'], "Extra inputs"),
        (["--dataset", "digits", "--classes", "12"], "unknown classes"),
        (["--dataset", "digits", "--indices", ",".join(map(str, range(200_000)))], "at most 100000 rows"),
    ],
)
def test_cli_rejects_bad_requests_and_stores_nothing(shared, monkeypatch, capsys, args, message):
    before = shared.ledger.counts()
    monkeypatch.setattr(sys, "argv", ["obliviate", "pipeline", "submit", "--home", str(shared.home),
                                      "--requester", "mallory", *args])  # fmt: skip
    with pytest.raises(SystemExit) as exit_info:
        main()
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err.replace("\n", "")
    assert shared.ledger.counts() == before


def test_cli_audit_verify_catches_an_edit(tmp_path, monkeypatch, capsys):
    pipe = new_pipeline(tmp_path / "home", gates=PERMISSIVE)
    pipe.submit("digits", {"indices": [1, 2]}, "frank")
    process(pipe)
    monkeypatch.setattr(sys, "argv", ["obliviate", "audit", "verify", "--home", str(pipe.home)])
    with pytest.raises(SystemExit) as ok:
        main()
    assert ok.value.code in (0, None) and "intact: 2 entries" in capsys.readouterr().out
    log = pipe.audit.log_path
    log.write_text(log.read_text().replace('"outcome":"promoted"', '"outcome":"x"', 1))
    with pytest.raises(SystemExit) as bad:
        main()
    assert bad.value.code == 1 and "BROKEN at entry 0" in capsys.readouterr().err


spec_strategy = st.one_of(
    st.builds(lambda xs: {"indices": xs}, st.lists(st.integers(-5, 1500), min_size=0, max_size=30)),
    st.builds(lambda xs: {"classes": xs}, st.lists(st.integers(-2, 12), min_size=0, max_size=4)),
    st.builds(lambda f: {"fraction": f}, st.floats(-0.5, 1.5, allow_nan=False)),
    st.builds(lambda lo, hi: {"target_range": [lo, hi]}, st.floats(-5, 5), st.floats(-5, 5)),
    st.dictionaries(st.sampled_from(["indices", "classes", "rows", "seed"]), st.integers(0, 3), max_size=3),
)


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(spec=spec_strategy, dataset=st.sampled_from(["digits", "digits", "mnist"]))
def test_property_submission_accepts_exactly_the_valid_specs(shared, spec, dataset):
    """Random specs: accepted iff they parse and resolve against the data; rejects change nothing."""
    train = digits_train()
    try:
        expected = ForgetSpec.model_validate(spec).resolve(train) if dataset == "digits" else None
    except ValueError:
        expected = None
    before = len(shared.ledger.list())
    if expected is None:
        with pytest.raises((RequestError, UnknownDatasetError)):
            shared.submit(dataset, spec, "prop")
        assert len(shared.ledger.list()) == before
    else:
        req, created = shared.submit(dataset, spec, "prop")
        assert created and len(shared.ledger.list()) == before + 1
        assert torch.equal(ForgetSpec.model_validate(req.spec).resolve(train), expected)


@settings(max_examples=60, deadline=None)
@given(
    batch=st.one_of(
        st.lists(
            st.builds(lambda xs: ForgetSpec(indices=sorted(set(xs))), st.lists(st.integers(0, 1437), min_size=1)),
            min_size=1,
            max_size=5,
        ),
        st.lists(st.builds(lambda c: ForgetSpec(classes=[c]), st.integers(0, 9)), min_size=1, max_size=5),
    ),
    forgotten=st.lists(st.integers(0, 1437), max_size=200, unique=True),
)
def test_property_batch_plan_forgets_exactly_the_new_rows(batch, forgotten):
    """The merged spec, resolved on the current rows, maps back to exactly the asked-for rows not yet gone."""
    train = digits_train()
    asked = set().union(*(set(s.resolve(train).tolist()) for s in batch))
    plan = plan_batch(batch, train, forgotten)
    assert set(plan.rows) == asked - set(forgotten) and set(plan.already) == asked & set(forgotten)
    if plan.spec is None:
        assert not plan.rows
        return
    from obliviate.data import DataSplit

    task = plan.task(DataSplit(train, train.subset([0, 1])))
    assert plan.alive[task.forget_idx].tolist() == plan.rows
    kept = set(plan.alive[task.retain_idx].tolist())
    assert not kept & (asked | set(forgotten)) and len(kept) + len(asked | set(forgotten)) == len(train)


def _home_on_a_data_file(kind: str, tmp_path, request) -> tuple:
    """A pipeline whose data are a file of its own (a digits CSV, or a copy of the LM facts), with one
    waiting request; returns its home, the file, and where one byte of a trained row sits in it."""
    home, data = tmp_path / "home", tmp_path / ("digits.csv" if kind == "classifier" else "facts.jsonl")
    if kind == "causal_lm":
        model_dir, facts = request.getfixturevalue("tiny_lm")
        data.write_bytes(facts.read_bytes())
        pipe = new_lm_pipeline(home, (model_dir, data), gates=LM_PERMISSIVE)
        pipe.submit("people", {"keys": [list(lm_people())[1]]}, "ivy")
        first = data.read_text().splitlines()[0]
        return pipe, data, first.index('"answer": "') + len('"answer": "')  # in the first trained fact
    X, y = load_digits(return_X_y=True)
    lines = [",".join([*(f"p{i}" for i in range(X.shape[1])), "target"])]
    lines += [",".join([*(f"{v:g}" for v in row), str(t)]) for row, t in zip(X[:400], y[:400], strict=True)]
    data.write_text("\n".join(lines) + "\n")
    dataset = DataSource(name="digits", source=str(data), target="target")
    pipe = Pipeline.create(
        home, config(dataset=dataset, gates=PERMISSIVE, recipe=RECIPE.model_copy(update={"epochs": 5}))
    )
    pipe.submit("digits", {"indices": [0, 1]}, "ivy")
    row = int(pipe.split.train.keys[0])  # a file row in the training split; its first value starts its line
    return pipe, data, sum(len(line) + 1 for line in lines[: row + 1])


def _files(home) -> dict:
    """What the registry and the audit trail hold, file by file."""
    return {
        p.relative_to(home): p.read_bytes() for d in ("models", "audit") for p in (home / d).rglob("*") if p.is_file()
    }


@pytest.mark.parametrize("kind", KINDS)
def test_changed_data_file_refuses_processing_until_restored(tmp_path, monkeypatch, capsys, request, kind):
    """One byte of a trained row changed since init: ``process`` refuses with one line (exit 2), the
    request stays waiting and nothing is written; ``check`` reports it; the restored file processes."""
    pipe, data, at = _home_on_a_data_file(kind, tmp_path, request)
    home, original = pipe.home, data.read_bytes()
    assert pipe.data_drift() is None
    pipe.close()
    changed = bytearray(original)
    changed[at] = ord("7") if changed[at] != ord("7") else ord("8")
    data.write_bytes(bytes(changed))
    before = _files(home)
    capsys.readouterr()  # what building the pipeline printed

    code, out, err = run_cli(monkeypatch, capsys, "pipeline", "process", "--home", home)
    assert code == 2 and len(err.strip().splitlines()) == 1, err + out
    assert f"error: data changed since v0001: the {'facts file' if kind == 'causal_lm' else 'training split of'}" in err
    pipe = Pipeline(home)
    assert [r.state for r in pipe.ledger.list()] == ["received"] and not pipe.ledger.open_batches()
    assert _files(home) == before, "processing wrote to the registry or the audit trail"
    code, out, err = run_cli(monkeypatch, capsys, "pipeline", "check", "--home", home)
    assert code == 1 and "mismatch: data changed since v0001" in err, err + out

    data.write_bytes(original)
    code, out, err = run_cli(monkeypatch, capsys, "pipeline", "process", "--home", home)
    assert code == 0 and "promoted v0002" in out, err + out
    code, out, err = run_cli(monkeypatch, capsys, "pipeline", "check", "--home", home)
    assert code == 0, err + out
