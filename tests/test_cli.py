"""The obliviate command: train -> forget -> evaluate on digits, demo, and bad input handling."""

from __future__ import annotations

import json
import sys

import pytest
from cli_helpers import run_cli

from obliviate.checkpoint import load_model
from obliviate.cli import main


@pytest.fixture(scope="module")
def trained_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("models") / "digits.safetensors"
    sys_argv = sys.argv
    sys.argv = ["obliviate", "train", "--out", str(path), "--model", "mlp", "--set", "epochs=5"]
    try:
        main()
    except SystemExit as exc:
        assert not exc.code
    finally:
        sys.argv = sys_argv
    return path


def test_train_writes_weights_and_card(trained_file):
    model, card = load_model(trained_file)
    assert card["data"]["source"] == "digits" and card["recipe"]["epochs"] == 5
    assert card["architecture"]["architecture"] == "mlp" and len(card["sha256"]) == 64


def test_forget_then_evaluate(trained_file, tmp_path, monkeypatch, capsys):
    before = trained_file.read_bytes()
    out = tmp_path / "forgot.safetensors"
    code, stdout, _ = run_cli(
        monkeypatch,
        capsys,
        "forget",
        "--model",
        str(trained_file),
        "--out",
        str(out),
        "--method",
        "gradient_ascent",
        "--classes",
        "3",
    )
    assert code == 0 and "gradient_ascent" in stdout
    assert trained_file.read_bytes() == before
    _, card = load_model(out)
    assert card["parent_sha256"] and card["forget_spec"] == {"classes": [3], "seed": 0}
    assert card["run"]["steps"] > 0
    report = tmp_path / "report.json"
    code, stdout, _ = run_cli(
        monkeypatch,
        capsys,
        "evaluate",
        "--model",
        f"original={trained_file}",
        "--model",
        f"ga={out}",
        "--classes",
        "3",
        "--out",
        str(report),
    )
    assert code == 0
    assert "no retrained model" in stdout and "gap in brackets" not in stdout and "verdict ga:" in stdout
    metrics = json.loads(report.read_text())["models"]
    assert metrics["ga"]["metrics"]["forget_acc"] < metrics["original"]["metrics"]["forget_acc"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["forget", "--model", "missing.safetensors", "--out", "x.safetensors", "--classes", "3"], "no such model"),
        (["forget", "--model", "{model}", "--out", "{out}", "--classes", "42"], "unknown classes"),
        (["forget", "--model", "{model}", "--out", "{out}", "--indices", "1,1"], "duplicate"),
        (["forget", "--model", "{model}", "--out", "{out}", "--classes", "3", "--method", "nope"], "unknown method"),
        (["forget", "--model", "{model}", "--out", "{out}", "--classes", "3", "--set", "lr=-1"], "bad config"),
        (["forget", "--model", "{model}", "--out", "{model}", "--classes", "3"], "never overwritten"),
        (["forget", "--model", "{model}", "--out", "{out}"], "exactly one"),
        (["forget", "--model", "{model}", "--out", "{out}", "--classes", "3", "--data", "diabetes"], "differs"),
        (["train", "--out", "{out}", "--data", "nowhere.csv"], "unknown data source"),
    ],
)
def test_bad_input_exits_2_with_one_line_and_writes_nothing(trained_file, tmp_path, monkeypatch, capsys, args, message):
    out = tmp_path / "new.safetensors"
    args = [a.format(model=trained_file, out=out) for a in args]
    code, _, err = run_cli(monkeypatch, capsys, *args)
    assert code == 2
    assert message in err and "Traceback" not in err and len(err.strip().splitlines()) <= 2
    assert not out.exists() and not out.with_suffix(".json").exists()


def test_corrupt_checkpoint_is_refused(trained_file, tmp_path, monkeypatch, capsys):
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(trained_file.read_bytes()[:-100])
    bad.with_suffix(".json").write_text(trained_file.with_suffix(".json").read_text())
    code, _, err = run_cli(
        monkeypatch, capsys, "forget", "--model", str(bad), "--out", str(tmp_path / "o.safetensors"), "--classes", "3"
    )
    assert code == 2 and "sha256" in err


def test_library_warnings_print_as_one_line(trained_file, tmp_path, monkeypatch, capsys):
    out = tmp_path / "ssd.safetensors"
    args = ["forget", "--model", str(trained_file), "--out", str(out), "--method", "ssd", "--classes", "3"]
    code, _, err = run_cli(monkeypatch, capsys, *args, "--set", "alpha=1e9")
    assert code == 0 and out.exists()
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("warning: ssd dampened no weight") and "UserWarning" not in err


def test_methods_lists_registry(monkeypatch, capsys):
    code, stdout, _ = run_cli(monkeypatch, capsys, "methods")
    assert code == 0 and "gradient_ascent" in stdout and "retrain" in stdout


def test_demo_writes_report(tmp_path, monkeypatch, capsys):
    out = tmp_path / "report.json"
    code, stdout, _ = run_cli(monkeypatch, capsys, "demo", "--model", "mlp", "--out", str(out), "--methods", "finetune")
    assert code == 0 and "retrain" in stdout
    report = json.loads(out.read_text())
    assert set(report["models"]) == {"original", "retrain", "finetune"}
    assert report["models"]["retrain"]["metrics"]["forget_acc"] < 5


def test_forget_refuses_a_model_that_fails_the_utility_check(trained_file, tmp_path, monkeypatch, capsys):
    out = tmp_path / "broken.safetensors"
    args = ["forget", "--model", str(trained_file), "--out", str(out), "--method", "ssd", "--classes", "3"]
    code, stdout, err = run_cli(monkeypatch, capsys, *args, "--set", "alpha=1e-9", "--set", "dampening=1e-6")
    assert code == 2 and "utility check failed" in err and "Traceback" not in err
    assert "verdict FAIL" in stdout  # the verdict is printed before the refusal
    assert not out.exists() and not out.with_suffix(".json").exists()


def test_forget_auto_prints_the_verdict_and_records_the_search(trained_file, tmp_path, monkeypatch, capsys):
    out = tmp_path / "auto.safetensors"
    args = ["forget", "--model", str(trained_file), "--out", str(out), "--method", "auto", "--classes", "3"]
    # the card's 5-epoch MLP trains in under a second; give the search a budget a loaded machine can meet
    code, stdout, err = run_cli(monkeypatch, capsys, *args, "--budget", "1.0", "--set", "retrain_seconds=60")
    assert code == 0, err
    assert "verdict PASS" in stdout and "chose" in stdout
    _, card = load_model(out)
    assert card["run"]["method"] == "auto" and card["run"]["details"]["search"]
