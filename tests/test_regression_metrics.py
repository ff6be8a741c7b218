"""Regression metrics against hand computations on tiny inputs."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from obliviate.data import Dataset, DataSplit
from obliviate.evaluation import evaluate
from obliviate.forget import ForgetSpec, UnlearningTask
from obliviate.metrics import METRICS, MetricContext


def tiny_task() -> UnlearningTask:
    """Six training rows (rows 0-1 forgotten) and four test rows, targets 0..9."""
    train = Dataset(torch.arange(6.0).reshape(6, 1), torch.arange(6.0), kind="regression", name="tiny")
    test = Dataset(torch.arange(6.0, 10.0).reshape(4, 1), torch.arange(6.0, 10.0), kind="regression", name="tiny")
    return UnlearningTask.build(DataSplit(train, test), ForgetSpec(indices=[0, 1]))


def context(task: UnlearningTask, errors: dict[str, list[float]], reference=None) -> MetricContext:
    """Outputs = labels + the given errors per view, shaped (n, 1) like a regression head's."""
    outputs = {v: (getattr(task, v).y + torch.tensor(e)).unsqueeze(1) for v, e in errors.items()}
    return MetricContext(task=task, name="m", model=nn.Identity(), outputs=outputs, reference=reference)


def test_wasserstein_matches_hand_computation():
    task = tiny_task()  # forget labels are 0 and 1
    ref = {"forget": torch.tensor([[5.0], [5.0]])}
    ctx = context(task, {"forget": [0.0, 0.0]}, reference=ref)
    # W1 between {0, 1} and {5, 5}: every unit of mass moves 5 or 4 -> (5 + 4) / 2
    assert METRICS["wasserstein"].fn(ctx) == pytest.approx(4.5)
    ctx = context(task, {"forget": [3.0, 1.0]}, reference={"forget": torch.tensor([[2.0], [3.0]])})
    # predictions {3, 2} vs {2, 3}: the same distribution, distance 0 although rows differ
    assert METRICS["wasserstein"].fn(ctx) == pytest.approx(0.0)
    assert METRICS["wasserstein"].fn(context(task, {"forget": [0.0, 0.0]})) is None


def test_mae_and_mse_per_view_match_hand_computation():
    task = tiny_task()
    ctx = context(task, {"forget": [1.0, -3.0], "retain": [0.0, 0.0, 2.0, -2.0], "test": [0.5] * 4})
    assert METRICS["forget_mae"].fn(ctx) == pytest.approx(2.0)
    assert METRICS["forget_mse"].fn(ctx) == pytest.approx(5.0)
    assert METRICS["retain_mae"].fn(ctx) == pytest.approx(1.0)
    assert METRICS["retain_mse"].fn(ctx) == pytest.approx(2.0)
    assert METRICS["test_mse"].fn(ctx) == pytest.approx(0.25)


def test_loss_mia_calls_low_loss_forget_rows_members_and_high_loss_rows_not():
    task = tiny_task()
    members = [0.0, 0.1, -0.1, 0.0]  # retain rows: tiny squared error
    outsiders = [3.0, -3.0, 2.5, -2.8]  # test rows: large squared error
    remembered = context(task, {"retain": members, "test": outsiders, "forget": [0.05, -0.05]})
    forgotten = context(task, {"retain": members, "test": outsiders, "forget": [3.0, -2.9]})
    assert METRICS["mia_loss"].fn(remembered) == pytest.approx(100.0)
    assert METRICS["mia_loss"].fn(forgotten) == pytest.approx(0.0)
    half = context(task, {"retain": members, "test": outsiders, "forget": [0.0, 3.0]})
    assert METRICS["mia_loss"].fn(half) == pytest.approx(50.0)


def test_evaluate_reports_regression_metrics_against_the_reference():
    task = tiny_task()
    exact = nn.Linear(1, 1)
    shifted = nn.Linear(1, 1)
    with torch.no_grad():
        exact.weight.fill_(1.0), exact.bias.zero_()
        shifted.weight.fill_(1.0), shifted.bias.fill_(2.0)
    report = evaluate(task, {"retrain": exact, "shifted": shifted}, original=None)
    assert report.models["retrain"].metrics["wasserstein"] == 0.0
    assert report.models["shifted"].metrics["wasserstein"] == pytest.approx(2.0)
    assert report.models["shifted"].metrics["forget_mae"] == pytest.approx(2.0)
    assert report.models["shifted"].gaps["forget_mae"] == pytest.approx(2.0)
    assert "mia_loss" in report.models["shifted"].metrics
    assert report.directions["wasserstein"] == "lower"
