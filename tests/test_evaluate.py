"""evaluate() against hand computations on a tiny example, and the report's JSON round trip."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from obliviate import ForgetSpec, Report, UnlearningTask, evaluate
from obliviate.data import Dataset, DataSplit
from obliviate.methods import RunLog
from obliviate.metrics.mia import entropy_attack, separability_cv, softmax_entropy


class Lookup(nn.Module):
    """Returns fixed logits per row: the single input feature is the row's id."""

    def __init__(self, logits: torch.Tensor):
        super().__init__()
        self.register_buffer("table", logits)
        self.dummy = nn.Parameter(torch.zeros(1))

    def forward(self, x):
        return self.table[x[:, 0].long()] + 0 * self.dummy


def _one_hot_logits(preds: list[int], confidence: float = 5.0) -> torch.Tensor:
    out = torch.zeros(len(preds), 2)
    out[torch.arange(len(preds)), torch.tensor(preds)] = confidence
    return out


@pytest.fixture
def tiny():
    # 8 train rows (ids 0..7), 4 test rows (ids 8..11); class 1 is forgotten.
    ids = torch.arange(12, dtype=torch.float32).unsqueeze(1)
    y = torch.tensor([0, 0, 0, 1, 1, 0, 0, 0, 0, 1, 0, 1])
    split = DataSplit(Dataset(ids[:8], y[:8]), Dataset(ids[8:], y[8:]))
    return UnlearningTask.build(split, ForgetSpec(classes=[1]))


def test_accuracies_gaps_avg_gap_and_speedup(tiny):
    # forget rows: 3, 4 (label 1); retain: 0,1,2,5,6,7 (label 0); test: 8..11 labels 0,1,0,1
    unlearned = Lookup(_one_hot_logits([0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 1]))
    reference = Lookup(_one_hot_logits([0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]))
    logs = {"u": RunLog("u", {}, 2.0, 10, 0), "ref": RunLog("retrain", {}, 10.0, 100, 0)}
    report = evaluate(
        tiny,
        {"u": unlearned, "ref": reference},
        reference="ref",
        original=None,
        logs=logs,
        metrics=["forget_acc", "retain_acc", "test_acc", "forget_test_acc", "retain_test_acc"],
    )
    u, ref = report.models["u"].metrics, report.models["ref"].metrics
    assert u["forget_acc"] == 50.0 and ref["forget_acc"] == 0.0
    assert u["retain_acc"] == pytest.approx(100 * 5 / 6) and ref["retain_acc"] == 100.0
    assert u["test_acc"] == 75.0 and ref["test_acc"] == 50.0
    assert u["forget_test_acc"] == 50.0 and u["retain_test_acc"] == 100.0
    gaps = report.models["u"].gaps
    assert gaps["forget_acc"] == 50.0 and gaps["test_acc"] == 25.0
    assert report.models["u"].avg_gap == pytest.approx((50 + 100 / 6 + 25) / 3)
    assert report.models["u"].speedup == 5.0 and report.models["ref"].avg_gap == 0.0
    assert report.directions["forget_acc"] == "reference"


def test_regression_errors_by_hand():
    X = torch.arange(6, dtype=torch.float32).unsqueeze(1)
    y = torch.tensor([1.0, 2.0, 3.0, 4.0, 5.0, 6.0])
    split = DataSplit(Dataset(X[:4], y[:4], kind="regression"), Dataset(X[4:], y[4:], kind="regression"))
    task = UnlearningTask.build(split, ForgetSpec(indices=[0, 1]))
    model = Lookup(torch.tensor([[1.5], [1.0], [3.0], [2.0], [5.0], [8.0]]))
    m = (
        evaluate(
            task,
            {"m": model},
            reference=None,
            original=None,
            metrics=["forget_mae", "forget_mse", "retain_mae", "test_mse"],
        )
        .models["m"]
        .metrics
    )
    assert m["forget_mae"] == pytest.approx((0.5 + 1.0) / 2)
    assert m["forget_mse"] == pytest.approx((0.25 + 1.0) / 2)
    assert m["retain_mae"] == pytest.approx((0 + 2) / 2)
    assert m["test_mse"] == pytest.approx((0 + 4) / 2)


def test_softmax_entropy_by_hand():
    logits = torch.tensor([[0.0, 0.0], [math.log(3.0), 0.0]])
    expected = [math.log(2), -(0.75 * math.log(0.75) + 0.25 * math.log(0.25))]
    assert softmax_entropy(logits) == pytest.approx(expected)


def test_entropy_attack_on_separable_features():
    members, non_members = np.full(20, 0.01), np.full(20, 0.9)
    assert entropy_attack(members, non_members, np.full(5, 0.02)) == 100.0
    assert entropy_attack(members, non_members, np.full(5, 0.8)) == 0.0
    assert entropy_attack(members, non_members, np.array([0.02, 0.02, 0.85, 0.85])) == 50.0


def test_separability_cv_chance_and_perfect():
    rng = np.random.default_rng(0)
    assert separability_cv(np.zeros(40) + 0.1, np.ones(40), seed=0) == 100.0
    same = separability_cv(rng.normal(size=200), rng.normal(size=200), seed=0)
    assert 35 <= same <= 65
    assert math.isnan(separability_cv(np.ones(1), np.ones(5)))


def test_mia_metrics_in_evaluate(tiny):
    model = Lookup(_one_hot_logits([0] * 12))
    metrics = evaluate(tiny, {"m": model}, reference=None, original=None).models["m"].metrics
    assert {"mia_entropy", "mia_loss_cv", "forget_acc"} <= set(metrics)


def test_report_json_round_trip(tiny, tmp_path):
    model = Lookup(_one_hot_logits([0] * 12))
    report = evaluate(tiny, {"a": model, "b": model}, reference="b", original=None, metrics=["forget_acc"])
    report.save(tmp_path / "r.json")
    loaded = Report.load(tmp_path / "r.json")
    assert loaded.models["a"].metrics == report.models["a"].metrics
    assert loaded.task["spec"] == {"classes": [1], "seed": 0} and loaded.versions["torch"]


def test_unknown_reference_or_metric(tiny):
    model = Lookup(_one_hot_logits([0] * 12))
    with pytest.raises(KeyError, match="reference"):
        evaluate(tiny, {"a": model}, reference="retrain")
    with pytest.raises(KeyError, match="unknown metrics"):
        evaluate(tiny, {"a": model}, reference=None, metrics=["accuracy_of_vibes"])
