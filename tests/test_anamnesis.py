"""Relearn time and the Anamnesis Index: a hand-checked case, and the metrics inside ``evaluate``."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from obliviate.data import Dataset, DataSplit, load_data
from obliviate.evaluation import evaluate
from obliviate.forget import ForgetSpec, UnlearningTask
from obliviate.methods import unlearn
from obliviate.metrics.anamnesis import RelearnSettings, anamnesis_index, relearn_steps
from obliviate.models import build_model
from obliviate.training import TrainConfig, fit


def line_model(w: float) -> nn.Module:
    model = nn.Linear(1, 1, bias=False)
    with torch.no_grad():
        model.weight.fill_(w)
    return model


@pytest.fixture(scope="module")
def line_task() -> UnlearningTask:
    """y = w x with x = 1. Forget rows: y = 1 (train) and y = 0.9 / 1.1 (test), so the original
    model w = 1 has forget-test MSE 0.01 and a model w has (w - 1)^2 + 0.01. Retained rows y = 5."""
    ones = torch.ones(8, 1)
    train = Dataset(ones, torch.tensor([1.0] * 4 + [5.0] * 4), kind="regression")
    test = Dataset(ones[:6], torch.tensor([0.9, 1.1, 0.9, 1.1, 5.0, 5.0]), kind="regression")
    return UnlearningTask.build(DataSplit(train, test), ForgetSpec(target_range=(0.5, 1.5)))


def test_relearn_steps_match_the_hand_computed_count(line_task):
    """Full-batch SGD at lr 0.25 on the forget rows only: the gradient of (w - 1)^2 is 2 (w - 1), so
    each step halves w - 1. Target: MSE <= 1.05 * 0.01, i.e. |w - 1| <= sqrt(0.0005) = 0.0224.
    From w = 3 (|w - 1| = 2): 2 / 2^k <= 0.0224 first at k = 7. From w = 2: k = 6. AIN = 7 / 6."""
    settings = RelearnSettings(optimizer="sgd", lr=0.25, momentum=0.0, batch_size=100, retain_ratio=0.0)
    unlearned, reference, original = line_model(3.0), line_model(2.0), line_model(1.0)
    target = 0.01
    assert relearn_steps(original, line_task, target, settings) == 0
    assert relearn_steps(unlearned, line_task, target, settings) == 7
    assert relearn_steps(reference, line_task, target, settings) == 6
    assert anamnesis_index(7, 6) == pytest.approx(7 / 6)
    assert unlearned.weight.item() == 3.0, "relearning must work on a copy"


def test_relearn_steps_are_capped(line_task):
    settings = RelearnSettings(optimizer="sgd", lr=1e-4, momentum=0.0, batch_size=100, max_steps=5, retain_ratio=0)
    assert relearn_steps(line_model(3.0), line_task, 0.01, settings) == 5


def test_anamnesis_index_of_a_zero_reference_counts_one_step():
    assert anamnesis_index(4, 0) == 4.0


def test_ain_in_evaluate_on_digits():
    """The original relearns in 0 steps (AIN 0: all knowledge still there); the reference has AIN 1
    by definition; both metrics are off by default because they train."""
    torch.set_num_threads(1)
    split = load_data("digits", seed=0)
    task = UnlearningTask.build(split, ForgetSpec(classes=[3]))
    recipe = TrainConfig(lr=2e-3, epochs=8, seed=0)
    original = fit(build_model("cnn", split.train.input_shape, 10, width=8), split.train, recipe).model
    retrain = unlearn(original, task, "retrain", recipe=recipe).model
    before = copy.deepcopy(retrain.state_dict())
    models = {"original": original, "retrain": retrain}
    report = evaluate(task, models, metrics=["forget_test_acc", "relearn_steps", "anamnesis_index"])
    assert report.models["original"].metrics["relearn_steps"] == 0
    assert report.models["original"].metrics["anamnesis_index"] == 0
    assert report.models["retrain"].metrics["anamnesis_index"] == 1
    assert report.models["retrain"].metrics["relearn_steps"] > 0
    assert report.models["original"].gaps["anamnesis_index"] == 1
    assert all(torch.equal(before[k], v) for k, v in retrain.state_dict().items())
    assert "anamnesis_index" not in evaluate(task, models).models["original"].metrics
