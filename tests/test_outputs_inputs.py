"""Outputs (never over the input, weights + card as one unit, the user's umask) and bad inputs
(one line, exit 2, nothing written) for model files and the pipeline CLI."""

from __future__ import annotations

import json
import os
import sys

import numpy as np
import pytest
import torch
from cli_helpers import run_cli
from pipeline_helpers import tiny_model
from safetensors.torch import save_file

from obliviate.atomic import atomic_write_text
from obliviate.checkpoint import CheckpointError, file_sha256, load_model, save_model
from obliviate.models import build_model


@pytest.fixture
def model_file(tmp_path):
    path = tmp_path / "m.safetensors"
    save_model(path, tiny_model(), {"data": {"source": "digits"}})
    return path


def _snapshot(path) -> dict:
    return {p.name: p.read_bytes() for p in path.parent.iterdir() if not p.name.startswith(".")}


@pytest.mark.parametrize("out", ["m.bin", "m.json", "m.safetensors", "./sub/../m.json"])
def test_forget_out_may_not_name_the_input_or_its_card(model_file, monkeypatch, capsys, out):
    before = _snapshot(model_file)
    (model_file.parent / "sub").mkdir()
    target = str(model_file.parent / out)
    code, _, err = run_cli(monkeypatch, capsys, "forget", "--model", str(model_file), "--out", target, "--classes", "3")
    assert code == 2 and "never overwritten" in err and len(err.strip().splitlines()) == 1
    (model_file.parent / "sub").rmdir()
    assert _snapshot(model_file) == before


def test_a_model_file_may_not_end_in_json(tmp_path):
    with pytest.raises(CheckpointError, match="cannot end in .json"):
        save_model(tmp_path / "x.json", tiny_model())
    assert not list(tmp_path.iterdir())


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_concurrent_writers_never_pair_one_runs_weights_with_the_others_card(tmp_path):
    out = tmp_path / "out.safetensors"
    models = []
    for i in range(2):
        m = build_model("mlp", (64,), 10, hidden=[256, 256], seed=i)
        models.append(m)
    for _trial in range(20):
        pids = []
        for i, m in enumerate(models):
            pid = os.fork()
            if pid == 0:
                try:
                    save_model(out, m, {"writer": i})
                finally:
                    os._exit(0)
            pids.append(pid)
        for pid in pids:
            assert os.waitpid(pid, 0)[1] == 0
        loaded, card = load_model(out)
        writer = models[card["writer"]]
        assert torch.equal(loaded.head.weight, writer.head.weight), "weights of one writer with the other's card"


@pytest.mark.parametrize("umask", [0o022, 0o077, 0o002])
def test_outputs_follow_the_umask(tmp_path, umask):
    old = os.umask(umask)
    try:
        save_model(tmp_path / "m.safetensors", tiny_model())
        atomic_write_text(tmp_path / "report.html", "<html></html>")
    finally:
        os.umask(old)
    for name in ("m.safetensors", "m.json", "report.html"):
        assert (tmp_path / name).stat().st_mode & 0o777 == 0o666 & ~umask, name


def test_float64_weights_are_converted_with_a_warning(tmp_path, model_file):
    model = tiny_model()
    path = tmp_path / "f64.safetensors"
    save_file({k: v.double() for k, v in model.state_dict().items()}, str(path))
    card = json.loads(model_file.with_suffix(".json").read_text())
    card["sha256"] = file_sha256(path)
    path.with_suffix(".json").write_text(json.dumps(card))
    with pytest.warns(UserWarning, match="stored as torch.float64 were converted"):
        loaded, _ = load_model(path)
    assert loaded.head.weight.dtype == torch.float32
    assert torch.allclose(loaded.head.weight, model.head.weight)


def _card_edit(model_file, change):
    card = json.loads(model_file.with_suffix(".json").read_text())
    model_file.with_suffix(".json").write_text(json.dumps(change(card)))


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda c: [1, 2], "JSON object, not list"),
        (lambda c: {**c, "architecture": {**c["architecture"], "kwargs": {"hidden": [10**12]}}}, "more than"),
        (lambda c: {**c, "architecture": {**c["architecture"], "kwargs": {"hidden": "wide"}}}, "architecture"),
        (lambda c: {**c, "architecture": None}, "architecture"),
    ],
)
def test_bad_cards_end_in_one_line(model_file, tmp_path, monkeypatch, capsys, change, message):
    _card_edit(model_file, change)
    out = tmp_path / "o.safetensors"
    code, _, err = run_cli(
        monkeypatch, capsys, "forget", "--model", str(model_file), "--out", str(out), "--classes", "3"
    )
    assert code == 2 and message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert not out.exists()


def _npz(tmp_path, name: str, nan: bool = False, truncate: bool = False):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(120, 8)).astype("float32")
    if nan:
        x[3, 2] = np.nan
    path = tmp_path / name
    np.savez(path, X=x, y=rng.integers(0, 3, 120))
    if truncate:
        path.write_bytes(path.read_bytes()[:300])
    return path


@pytest.mark.parametrize(
    ("kind", "message"),
    [("truncated", "cannot read .npz"), ("nan", "NaN"), ("mismatch", "inputs of shape (1, 8, 8)")],
)
def test_pipeline_init_refuses_bad_data_or_model_and_leaves_nothing(tmp_path, monkeypatch, capsys, kind, message):
    data = _npz(tmp_path, "d.npz", nan=kind == "nan", truncate=kind == "truncated")
    home = tmp_path / "home"
    keys = tmp_path / "keys"
    monkeypatch.setenv("OBLIVIATE_KEY_DIR", str(keys))
    args = ["pipeline", "init", "--home", str(home), "--data", str(data), "--model-set", "hidden=[8]"]
    if kind == "mismatch":
        save_model(tmp_path / "digits.safetensors", tiny_model())
        args += ["--model-file", str(tmp_path / "digits.safetensors")]
    code, _, err = run_cli(monkeypatch, capsys, *args)
    assert code == 2 and message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
    leftovers = [p.name for p in tmp_path.iterdir() if p.name not in {"d.npz", "digits.safetensors", "digits.json"}]
    assert leftovers in ([], [".digits.safetensors.lock"]), leftovers
    # and a second init with good data works in the same place
    good = _npz(tmp_path, "good.npz")
    code, out, err = run_cli(monkeypatch, capsys, "pipeline", "init", "--home", str(home), "--data", str(good),
                             "--model-set", "hidden=[8]", "--train-set", "epochs=1")  # fmt: skip
    assert code == 0, err
    assert "serving v0001" in out and len(list(keys.iterdir())) == 1


def test_pipeline_init_refuses_a_key_inside_the_home(tmp_path, monkeypatch, capsys):
    home = tmp_path / "home"
    code, _, err = run_cli(monkeypatch, capsys, "pipeline", "init", "--home", str(home), "--data",
                           str(_npz(tmp_path, "d.npz")), "--audit-key", str(home / "k.key"))  # fmt: skip
    assert code == 2 and "outside the pipeline home" in err and not home.exists()


def test_hidden_of_a_trillion_is_refused_before_allocating(tmp_path, monkeypatch, capsys):
    home = tmp_path / "home"
    args = ["pipeline", "init", "--home", str(home), "--data", str(_npz(tmp_path, "d.npz"))]
    code, _, err = run_cli(monkeypatch, capsys, *args, "--model-set", f"hidden=[{10**12}]")
    assert code == 2 and "more than" in err and not home.exists()


@pytest.mark.parametrize(
    ("args", "extra"),
    [
        (["train", "--out", "{tmp}/m.safetensors", "--data", "mnist5k"], "data"),
        (["pipeline", "status", "--home", "{tmp}/home"], "pipeline"),
    ],
)
def test_a_missing_extra_is_one_line_naming_it(tmp_path, monkeypatch, capsys, args, extra):
    for name in ("mlxtend", "mlxtend.data", "sqlalchemy"):
        monkeypatch.setitem(sys.modules, name, None)  # as if not installed
    monkeypatch.delitem(sys.modules, "obliviate.pipeline", raising=False)
    code, _, err = run_cli(monkeypatch, capsys, *[a.format(tmp=tmp_path) for a in args])
    assert code == 2 and f"pip install 'obliviate[{extra}]'" in err and len(err.strip().splitlines()) == 1
