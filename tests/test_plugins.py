"""Bring your own model, method and metric: plugins, strict registries, factory-saved models in the CLI."""

from __future__ import annotations

import json
import sys

import pytest
import torch
import yaml
from cli_helpers import run_cli

from obliviate import plugins
from obliviate.checkpoint import CheckpointError, load_model, save_model
from obliviate.data import load_data
from obliviate.methods import REGISTRY, Method, MethodError, register
from obliviate.metrics import METRICS, metric
from obliviate.models import ARCHITECTURES, register_architecture
from obliviate.runner.executor import _in_worker
from obliviate.training import TrainConfig, fit

PLUGIN = '''
"""A user's package: a GroupNorm CNN, a toy method and a metric, registered on import."""
import torch
from torch import nn

from obliviate.methods import Method, register
from obliviate.metrics import metric
from obliviate.models import register_architecture


class GNCNN(nn.Module):
    def __init__(self, channels=4, classes=10):
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(1, channels, 3, padding=1), nn.GroupNorm(2, channels), nn.ReLU(), nn.Flatten(),
            nn.Linear(channels * 64, classes),
        )

    def forward(self, x):
        return self.net(x)


def build(channels=4, classes=10):
    return GNCNN(channels, classes)


register_architecture("gncnn", lambda input_shape, num_outputs, **kw: GNCNN(classes=num_outputs, **kw))


@register
class ShrinkHead(Method):
    """Halve the output layer's weights (a toy user method)."""

    name = "shrink_head"

    def run(self, model, data, ctx):
        head = [m for m in model.modules() if isinstance(m, nn.Linear)][-1]
        with torch.no_grad():
            head.weight.mul_(0.5)
        ctx.steps += 1
        return model


@metric("mean_forget_logit", direction="info", description="mean logit on the forget rows (toy)")
def mean_forget_logit(ctx):
    return float(ctx.outputs["forget"].mean())
'''


@pytest.fixture
def user_code(tmp_path, monkeypatch):
    """A directory on sys.path for user modules; every registration they make is undone after."""
    saved = dict(REGISTRY), dict(METRICS), dict(ARCHITECTURES), list(plugins._named), set(plugins._entry_points_loaded)
    modules = set(sys.modules)
    monkeypatch.syspath_prepend(str(tmp_path))
    (tmp_path / "gn_plugin.py").write_text(PLUGIN)
    yield tmp_path
    for registry, before in zip((REGISTRY, METRICS, ARCHITECTURES), saved[:3], strict=True):
        registry.clear()
        registry.update(before)
    plugins._named[:] = saved[3]
    plugins._entry_points_loaded.clear()
    plugins._entry_points_loaded.update(saved[4])
    for name in set(sys.modules) - modules:  # only the user's modules: torch's lazy imports must stay
        if str(getattr(sys.modules[name], "__file__", None) or "").startswith(str(tmp_path)):
            del sys.modules[name]


def test_registries_refuse_duplicates_unless_replaced(user_code):
    class Other(Method):
        """Another finetune."""

        name = "finetune"

        def run(self, model, data, ctx):
            return model

    with pytest.raises(MethodError, match="already registered"):
        register(Other)
    assert register(replace=True)(Other) is Other and REGISTRY["finetune"] is Other
    with pytest.raises(ValueError, match="metric 'zrf' is already registered"):
        metric("zrf", direction="info", description="not ZRF")(lambda ctx: 0.0)
    with pytest.raises(ValueError, match="architecture 'cnn' is already registered"):
        register_architecture("cnn", lambda shape, n: torch.nn.Linear(1, 1))
    register_architecture("cnn", ARCHITECTURES["cnn"])  # the same factory again is harmless


def test_plugin_option_and_methods_listing(user_code, monkeypatch, capsys):
    code, out, _ = run_cli(monkeypatch, capsys, "--plugin", "gn_plugin", "methods")
    assert code == 0 and "shrink_head" in out and "Halve the output" in out
    code, _, err = run_cli(monkeypatch, capsys, "--plugin", "no_such_plugin_mod", "methods")
    assert code == 2 and "cannot load plugin 'no_such_plugin_mod'" in err and len(err.strip().splitlines()) == 1


def test_installed_entry_point_is_loaded(user_code, monkeypatch, capsys):
    dist = user_code / "my_unlearning-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: my-unlearning\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[obliviate.plugins]\nmine = ep_plugin\n")
    (user_code / "ep_plugin.py").write_text(PLUGIN.replace("shrink_head", "ep_shrink").replace('"gncnn"', '"gncnn2"')
                                            .replace("mean_forget_logit", "ep_logit"))  # fmt: skip
    code, out, _ = run_cli(monkeypatch, capsys, "methods")
    assert code == 0 and "ep_shrink" in out


def test_worker_imports_the_drivers_plugins(user_code):
    (user_code / "worker_plugin.py").write_text(PLUGIN.replace("shrink_head", "worker_shrink"))
    assert "worker_plugin" not in sys.modules and "worker_shrink" not in REGISTRY
    assert _in_worker(lambda item: item in REGISTRY, "worker_shrink", ["worker_plugin"]) is True


def test_save_model_needs_a_factory_that_rebuilds_it(user_code):
    import gn_plugin

    model = gn_plugin.build(channels=4)
    with pytest.raises(CheckpointError, match="pass factory="):
        save_model(user_code / "m.safetensors", model)
    with pytest.raises(CheckpointError, match="builds a different model"):
        save_model(user_code / "m.safetensors", model, factory="gn_plugin:build", factory_kwargs={"channels": 8})
    with pytest.raises(CheckpointError, match="cannot import model factory 'gn_missing:build'"):
        save_model(user_code / "m.safetensors", model, factory="gn_missing:build")
    assert not (user_code / "m.safetensors").exists()
    card = save_model(user_code / "m.safetensors", model, factory="gn_plugin:build", factory_kwargs={"channels": 4})
    assert card["architecture"] == {"factory": "gn_plugin:build", "kwargs": {"channels": 4}}
    loaded, _ = load_model(user_code / "m.safetensors")
    state = model.state_dict()
    assert all(torch.equal(v, state[k]) for k, v in loaded.state_dict().items())
    (user_code / "gn_plugin.py").unlink()
    del sys.modules["gn_plugin"]
    with pytest.raises(CheckpointError, match="cannot rebuild the model.*gn_plugin"):
        load_model(user_code / "m.safetensors")


def test_custom_model_through_forget_bench_and_pipeline(user_code, monkeypatch, capsys, tmp_path):
    monkeypatch.chdir(tmp_path)
    code, _, err = run_cli(monkeypatch, capsys, "train", "--model", "gncnn", "--out", "t.safetensors")
    assert code == 2 and "unknown model 'gncnn'" in err  # not registered without the plugin
    import gn_plugin

    split = load_data("digits", seed=0)
    model = fit(gn_plugin.build(channels=4), split.train, TrainConfig(epochs=1, seed=0)).model
    data = {"source": "digits", "kind": "classification", "split_seed": 0, "fingerprint": split.train.fingerprint()}
    save_model("gn.safetensors", model, {"data": data}, factory="gn_plugin:build", factory_kwargs={"channels": 4})

    code, out, err = run_cli(
        monkeypatch, capsys, "--plugin", "gn_plugin", "forget", "--model", "gn.safetensors",
        "--out", "gn-f.safetensors", "--method", "shrink_head", "--classes", "3", "--device", "cpu",
    )  # fmt: skip
    assert code == 0, err
    forgotten, card = load_model("gn-f.safetensors")
    assert card["run"]["method"] == "shrink_head" and card["architecture"]["factory"] == "gn_plugin:build"
    assert torch.allclose(forgotten.net[-1].weight, model.net[-1].weight * 0.5)
    code, _, err = run_cli(monkeypatch, capsys, "evaluate", "--model", "original=gn.safetensors",
                           "--model", "shrunk=gn-f.safetensors", "--classes", "3", "--out", "rep.json")  # fmt: skip
    assert code == 0, err
    assert set(json.loads((tmp_path / "rep.json").read_text())["models"]) == {"original", "shrunk"}

    code, _, err = run_cli(monkeypatch, capsys, "--plugin", "gn_plugin", "train", "--model", "gncnn",
                           "--out", "t.safetensors", "--set", "epochs=1", "--device", "auto")  # fmt: skip
    assert code == 0 and load_model("t.safetensors")[1]["architecture"]["architecture"] == "gncnn", err

    suite = {
        "name": "gn", "data": "digits", "architecture": "gncnn", "recipe": {"epochs": 1},
        "scenarios": [{"name": "class3", "spec": {"classes": [3]}}], "methods": ["shrink_head"],
        "metrics": ["forget_acc", "test_acc", "mean_forget_logit"],
    }  # fmt: skip
    (tmp_path / "suite.yaml").write_text(yaml.safe_dump(suite))
    code, out, err = run_cli(
        monkeypatch, capsys, "--plugin", "gn_plugin", "bench", "suite.yaml", "--out", "run", "--cache", "cache"
    )
    assert code == 0, err
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    row = results["summary"]["class3"]["shrink_head"]["metrics"]
    assert results["device"] == "cpu" and "mean_forget_logit" in row and row["test_acc"]["mean"] > 0

    home = ["--home", "pipe"]
    code, _, err = run_cli(
        monkeypatch, capsys, "--plugin", "gn_plugin", "pipeline", "init", *home, "--model-file", "gn.safetensors",
        "--method", "shrink_head", "--gate", "forget_acc <= 100", "--metric", "forget_acc",
    )  # fmt: skip
    assert code == 0, err
    code, _, err = run_cli(monkeypatch, capsys, "pipeline", "submit", *home, "--dataset", "digits",
                           "--requester", "me", "--classes", "3")  # fmt: skip
    assert code == 0, err
    code, out, err = run_cli(monkeypatch, capsys, "--plugin", "gn_plugin", "pipeline", "process", *home)
    assert code == 0 and "1 requests promoted" in out, out + err
