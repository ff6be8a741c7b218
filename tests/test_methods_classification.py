"""Classification unlearning methods on digits: each forgets, keeps the rest, reads only what it
declares, refuses scenarios it cannot serve, and runs from the CLI.

One small CNN is trained per scenario family for the whole module; references are retrained
once. Bounds (stated before running, percent points):
- full class: forget accuracy <= 10% (retraining gets 0%), accuracy on retained-class test rows
  at most 10 points below the original's;
- sub-class: the forget-accuracy gap to the retrained model shrinks by at least a quarter,
  retained-class test accuracy at most 10 points below the original's;
- random 10%: forget accuracy within 10 points of the retrained model's, test accuracy at most
  8 points below the original's.
"""

from __future__ import annotations

import copy

import pytest
import torch
from typer.testing import CliRunner

from obliviate import DataAccessError, ForgetSpec, TrainConfig, UnlearningTask, build_model, fit, load_data, unlearn
from obliviate.adapter import predict
from obliviate.blocks.relabel import nearest_wrong_labels
from obliviate.checkpoint import save_model
from obliviate.cli import app
from obliviate.data import DataSplit
from obliviate.methods import REGISTRY, MethodError, RunContext, make_config
from obliviate.synthesis import class_noise
from obliviate.training import accuracy, seed_everything

NEW_METHODS = [
    "unsir",
    "bad_teacher",
    "amnesiac",
    "random_labels",
    "neggrad_plus",
    "boundary_shrink",
    "l1_sparse",
    "scrub",
    "ssd",
    "salun",
]
SUBCLASS_METHODS = ["amnesiac", "bad_teacher", "neggrad_plus", "random_labels", "salun"]
"""SCRUB and SSD accept sub-class requests but barely move a digits sub-class (see docs/methods_classification.md)."""
RANDOM_METHODS = [
    pytest.param(
        m,
        marks=pytest.mark.xfail(
            strict=True, reason="known weakness: wrong labels on random rows cost 8.4 points of test accuracy"
        ),
    )
    if m == "amnesiac"
    else m
    for m in NEW_METHODS
    if "random" in REGISTRY[m].scenarios
]
CLI_SHORTCUTS = {"l1_sparse": ["--set", "epochs=1"], "neggrad_plus": ["--set", "epochs=1"]}
"""The CLI test checks the command path, not forgetting; the two slowest methods run one epoch."""
GROUPS = [[0, 6, 8, 9], [1, 4, 7], [2, 3, 5]]
RECIPE = TrainConfig(optimizer="adam", lr=2e-3, epochs=12, batch_size=64, seed=0)


def _train(data):
    torch.set_num_threads(1)
    torch.manual_seed(0)  # fit seeds the shuffling, not the initial weights
    return fit(build_model("cnn", data.input_shape, data.num_classes), data, RECIPE).model


@pytest.fixture(scope="module")
def split():
    return load_data("digits", seed=0)


@pytest.fixture(scope="module")
def original(split):
    return _train(split.train)


@pytest.fixture(scope="module")
def class_task(split):
    return UnlearningTask.build(split, ForgetSpec(classes=[3]))


@pytest.fixture(scope="module")
def random_task(split):
    return UnlearningTask.build(split, ForgetSpec(fraction=0.1, seed=0))


@pytest.fixture(scope="module")
def random_reference(original, random_task):
    return unlearn(original, random_task, "retrain", recipe=RECIPE).model


@pytest.fixture(scope="module")
def grouped(split):
    grouped = DataSplit(split.train.group_classes(GROUPS), split.test.group_classes(GROUPS))
    task = UnlearningTask.build(grouped, ForgetSpec(subclass=(2, 3)))
    model = _train(grouped.train)
    reference = unlearn(model, task, "retrain", recipe=RECIPE).model
    return task, model, reference


def _retain_test_drop(before, after, task) -> float:
    return accuracy(before, task.retain_test) - accuracy(after, task.retain_test)


@pytest.mark.parametrize("method", NEW_METHODS)
def test_forgets_a_class_and_keeps_the_rest(method, original, class_task):
    assert accuracy(original, class_task.forget) > 95
    before = copy.deepcopy(original.state_dict())
    result = unlearn(original, class_task, method, seed=0)
    assert accuracy(result.model, class_task.forget) <= 10
    assert _retain_test_drop(original, result.model, class_task) <= 10
    assert result.log.seconds > 0
    assert all(torch.equal(v, original.state_dict()[k]) for k, v in before.items()), "original was modified"


@pytest.mark.parametrize("method", SUBCLASS_METHODS)
def test_subclass_forgetting_moves_toward_retrain(method, grouped):
    task, model, reference = grouped
    target = accuracy(reference, task.forget)
    start_gap = abs(accuracy(model, task.forget) - target)
    result = unlearn(model, task, method, seed=0)
    assert abs(accuracy(result.model, task.forget) - target) <= 0.75 * start_gap
    assert _retain_test_drop(model, result.model, task) <= 10


@pytest.mark.parametrize("method", RANDOM_METHODS)
def test_random_rows_stay_near_retrain(method, original, random_task, random_reference):
    result = unlearn(original, random_task, method, seed=0)
    assert abs(accuracy(result.model, random_task.forget) - accuracy(random_reference, random_task.forget)) <= 10
    assert accuracy(original, random_task.test) - accuracy(result.model, random_task.test) <= 8


def test_unsir_never_reads_the_forget_set(original, class_task):
    assert "forget" not in REGISTRY["unsir"].needs
    view = class_task.view(REGISTRY["unsir"].needs)
    with pytest.raises(DataAccessError):
        _ = view.forget
    # Any read of Df inside run() would raise on this view, so finishing proves it never looks.
    method = REGISTRY["unsir"](make_config("unsir"))
    ctx = RunContext(device=torch.device("cpu"), seed=0, generator=seed_everything(0))
    model = method.run(copy.deepcopy(original), view, ctx)
    assert accuracy(model, class_task.forget) <= 10


@pytest.mark.parametrize(
    ("method", "spec"),
    [
        ("unsir", ForgetSpec(fraction=0.1)),
        ("unsir", ForgetSpec(indices=[0, 1, 2])),
        ("boundary_shrink", ForgetSpec(fraction=0.1)),
    ],
)
def test_refuses_scenarios_it_cannot_serve(method, spec, original, split):
    task = UnlearningTask.build(split, spec)
    with pytest.raises(MethodError, match="serves"):
        unlearn(original, task, method)


def test_unsir_refuses_subclass(grouped):
    task, model, _ = grouped
    with pytest.raises(MethodError, match="serves"):
        unlearn(model, task, "unsir")


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory, original, split):
    path = tmp_path_factory.mktemp("ckpt") / "digits.safetensors"
    card = {
        "data": {
            "source": "digits",
            "kind": "classification",
            "target": None,
            "split_seed": 0,
            "fingerprint": split.train.fingerprint(),
        },
        "recipe": RECIPE.model_dump(),
    }
    save_model(path, original, card)
    return path


@pytest.mark.parametrize("method", NEW_METHODS)
def test_cli_forget_runs_each_method(method, checkpoint, tmp_path):
    out = tmp_path / f"{method}.safetensors"
    args = ["forget", "--model", str(checkpoint), "--out", str(out), "--method", method, "--classes", "3"]
    args += CLI_SHORTCUTS.get(method, []) + ["--force"]  # the shortened runs may lose utility; the path is tested
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert out.exists()


def test_cli_lists_every_method():
    result = CliRunner().invoke(app, ["methods"], terminal_width=400)
    assert result.exit_code == 0
    for name in NEW_METHODS:
        assert name in result.output


@pytest.mark.parametrize("method", ["l1_sparse", "ssd"])
def test_label_free_methods_also_serve_regression(method):
    """l1-sparse and SSD use only the task loss, so they run on a target-range request."""
    split = load_data("diabetes", seed=0)
    config = TrainConfig(optimizer="adam", lr=1e-2, epochs=20, batch_size=32, seed=0)
    model = fit(build_model("mlp", split.train.input_shape, 1), split.train, config).model
    task = UnlearningTask.build(split, ForgetSpec(target_range=(250.0, 400.0)))
    result = unlearn(model, task, method, seed=0)
    out = result.model(task.retain.X)
    assert torch.isfinite(out).all()


def test_scrub_min_steps_cuts_each_min_pass_short(original, class_task):
    """``min_steps`` (auto's cheap SCRUB) ends each min pass early; the max pass still covers Df."""
    max_pass = -(-len(class_task.forget) // 64)
    full = -(-len(class_task.retain) // 64)
    log = unlearn(original, class_task, "scrub", forget_batch_size=64, min_steps=5).log
    assert full > 5 and log.steps == max_pass + 5


def test_ssd_reports_what_it_dampened_and_warns_when_nothing(original, class_task):
    chosen = unlearn(original, class_task, "ssd").log.details
    assert 0 < chosen["dampened"] < chosen["weights"]
    assert 1 <= chosen["alpha"] < chosen["max_importance_ratio"]  # read off the ratios, so it selects
    assert chosen["forget_acc"][1] < chosen["forget_acc"][0] - 50
    too_high = chosen["max_importance_ratio"] * 2
    with pytest.warns(UserWarning, match="dampened no weight"):
        unchanged = unlearn(original, class_task, "ssd", alpha=too_high)
    assert unchanged.log.details["dampened"] == 0
    for a, b in zip(original.parameters(), unchanged.model.parameters(), strict=True):
        assert torch.equal(a, b)


def test_ssd_warns_when_dampening_leaves_the_forget_set_as_it_was(original, class_task):
    """A lambda so large that every selected weight keeps factor min(lambda / ratio, 1) = 1: weights
    are selected, the model does not change, and the user must hear so (on digits random rows
    with training seed 1 the default settings do the same: forget loss 0.0106 -> 0.0105)."""
    with pytest.warns(UserWarning, match="barely moved"):
        details = unlearn(original, class_task, "ssd", dampening=1e6).log.details
    assert details["dampened"] > 0
    assert details["forget_acc"][1] == details["forget_acc"][0]


def test_unsir_noise_stays_in_the_range_of_real_inputs(original, class_task):
    labels = torch.full((16,), 3)
    shape = class_task.input_shape
    search = dict(maximise=True, steps=40)
    free = class_noise(original, labels, shape, **search, generator=torch.Generator().manual_seed(0))
    kept = class_noise(original, labels, shape, **search, bounds=(0.0, 1.0), generator=torch.Generator().manual_seed(0))
    assert free.min() < 0 or free.max() > 1
    assert kept.min() >= 0 and kept.max() <= 1
    details = unlearn(original, class_task, "unsir").log.details
    assert details["retain_rows"] == len(class_task.retain)  # all retained rows by default


def test_salun_sends_a_forgotten_class_to_its_nearest_class(original, class_task, random_task):
    """On a whole class SalUn labels each forget row with the original's most likely other class,
    so the rows end confidently on the classes they resemble (as under retraining); the paper's
    redrawn uniform labels (kept for random rows) leave them flat over the other classes."""
    nearest = nearest_wrong_labels(original, class_task.forget)
    assert not (nearest == class_task.forget.y).any()
    runs = {rule: unlearn(original, class_task, "salun", seed=0, wrong_labels=rule) for rule in (None, "random")}
    assert runs[None].log.config["wrong_labels"] == "nearest"
    probs = {rule: predict(r.model, class_task.forget).softmax(1) for rule, r in runs.items()}
    assert (probs[None].argmax(1) == nearest).float().mean() >= 0.7  # measured 0.86; random labels 0.38
    assert probs[None].max(1).values.mean() > probs["random"].max(1).values.mean() + 0.15  # 0.65 against 0.40
    assert unlearn(original, random_task, "salun", seed=0, epochs=1).log.config["wrong_labels"] == "random"
