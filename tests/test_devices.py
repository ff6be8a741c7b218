"""``--device`` on the command line: auto picks what is here; a device that is not here is one line, exit 2."""

from __future__ import annotations

import sys

import pytest
import torch

from obliviate.cli import main
from obliviate.cli.devices import resolve_device


def test_auto_is_the_gpu_when_there_is_one():
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    assert resolve_device("cpu") == torch.device("cpu")


@pytest.mark.parametrize(
    "device, message",
    [("gpu", "unknown device 'gpu'"), ("cuda:99", "device 'cuda:99' is not available")],
)
def test_unusable_device_is_one_line_and_writes_nothing(device, message, tmp_path, monkeypatch, capsys):
    out = tmp_path / "m.safetensors"
    monkeypatch.setattr(sys, "argv", ["obliviate", "train", "--out", str(out), "--model", "mlp", "--device", device])
    with pytest.raises(SystemExit) as exc:
        main()
    err = capsys.readouterr().err
    assert exc.value.code == 2 and message in err and len(err.strip().splitlines()) == 1
    assert not list(tmp_path.iterdir())


def test_llm_demo_runs_on_the_requested_device(tmp_path, monkeypatch, capsys):
    pytest.importorskip("transformers")
    from cli_helpers import run_cli

    import obliviate.llm.demo as demo

    seen = {}

    def fake_demo(methods, seed=0, progress=False, device=None):
        seen["device"] = device
        return demo.LMRun({}, {})

    monkeypatch.setattr(demo, "run_llm_demo", fake_demo)
    code, _, err = run_cli(
        monkeypatch, capsys, "demo", "--task", "llm", "--device", "cpu", "--out", tmp_path / "r.json"
    )
    assert code == 0, err
    assert seen["device"] == torch.device("cpu")
