"""Windowed series, per-row times and series ids, the new forget selectors, and the bundled loaders."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from obliviate.data import BUNDLED, DataError, Dataset, load_data
from obliviate.data.series import Series, make_windows, windowed_dataset
from obliviate.forget import ForgetSpec, ForgetSpecError, UnlearningTask
from obliviate.training import task_loss, unit_loss


def ramp(name: str = "s", n: int = 10, start: float = 0.0) -> Series:
    values = np.arange(n, dtype=float) + start
    return Series(name, values, times=2000 + np.arange(n, dtype=float))


def test_make_windows_by_hand():
    X, y, t = make_windows(ramp(n=6), window=3, horizon=1)
    # values 0..5, mean 2.5, std sqrt(35/12); row i sees values i..i+2 and predicts i+3
    std = np.sqrt(35 / 12)
    assert X.shape == (3, 3, 1)
    np.testing.assert_allclose(X[:, :, 0], (np.array([[0, 1, 2], [1, 2, 3], [2, 3, 4]]) - 2.5) / std)
    np.testing.assert_array_equal(y, [3, 4, 5])
    np.testing.assert_array_equal(t, [2003, 2004, 2005])
    _, y2, t2 = make_windows(ramp(n=6), window=3, horizon=2)
    np.testing.assert_array_equal(y2, [4, 5])
    np.testing.assert_array_equal(t2, [2004, 2005])


def test_target_column_of_multivariate_series():
    values = np.stack([np.arange(5.0), 10 * np.arange(5.0)], axis=1)
    X, y, _ = make_windows(Series("two", values, np.arange(5.0), target=1), window=2)
    assert X.shape == (3, 2, 2)
    np.testing.assert_array_equal(y, [20, 30, 40])


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: make_windows(ramp(n=3), window=3), "too few"),
        (lambda: make_windows(ramp(), window=0), "window and horizon"),
        (lambda: Series("nan", np.array([1.0, np.nan]), np.arange(2.0)), "NaN"),
        (lambda: Series("short", np.arange(3.0), np.arange(2.0)), "do not match"),
        (lambda: Series("col", np.arange(3.0), np.arange(3.0), target=1), "target column"),
        (lambda: windowed_dataset([], 2), "at least one"),
    ],
)
def test_bad_series_are_refused(build, message):
    with pytest.raises(DataError, match=message):
        build()


def test_several_series_keep_ids_names_and_pooled_scale():
    data = windowed_dataset([ramp("a", 5), ramp("b", 6, start=100)], window=2, name="two")
    assert len(data) == 3 + 4
    assert data.series.tolist() == [0] * 3 + [1] * 4
    assert data.meta["series_names"] == ["a", "b"]
    # pooled scaling keeps the level: every window of "b" sits far above every window of "a"
    assert data.X[data.series == 1].min() > data.X[data.series == 0].max()
    assert windowed_dataset([ramp()], window=2).series is None


def test_dataset_times_and_series_follow_subset_and_are_validated():
    data = Dataset(torch.zeros(4, 2), torch.arange(4.0), kind="regression", times=[1, 2, 3, 4], series=[0, 0, 1, 1])
    assert data.times.dtype == torch.float64 and data.series.dtype == torch.long
    sub = data.subset([3, 1])
    assert sub.times.tolist() == [4, 2] and sub.series.tolist() == [1, 0] and sub.y.tolist() == [3, 1]
    with pytest.raises(DataError, match="times has shape"):
        Dataset(torch.zeros(4, 2), torch.zeros(4), kind="regression", times=[1, 2])
    with pytest.raises(DataError, match="NaN"):
        Dataset(torch.zeros(2, 2), torch.zeros(2), kind="regression", times=[1.0, float("nan")])


@pytest.fixture(scope="module")
def series_split():
    return load_data("arrivals", seed=0)


def test_time_window_forgets_rows_whose_target_time_is_inside(series_split):
    spec = ForgetSpec(time_window=(1990, 1995.5))
    task = UnlearningTask.build(series_split, spec)
    assert spec.scenario == "time_window"
    train_in = (series_split.train.times >= 1990) & (series_split.train.times <= 1995.5)
    assert task.forget_idx.tolist() == torch.nonzero(train_in).flatten().tolist()
    assert ((task.forget_test.times >= 1990) & (task.forget_test.times <= 1995.5)).all()
    outside = task.retain_test.times
    assert ((outside < 1990) | (outside > 1995.5)).all()
    assert ForgetSpec.model_validate_json(spec.model_dump_json()) == spec


def test_series_forgetting_takes_every_row_of_the_series(series_split):
    spec = ForgetSpec(series_ids=[1, 3])
    task = UnlearningTask.build(series_split, spec)
    assert spec.scenario == "series"
    assert set(task.forget.series.tolist()) == {1, 3}
    assert set(task.retain.series.tolist()) == {0, 2}
    assert set(task.forget_test.series.tolist()) == {1, 3}
    assert len(task.forget) + len(task.retain) == len(series_split.train)


def test_time_and_series_requests_fail_clearly(series_split):
    with pytest.raises(ValueError, match="start is after its end"):
        ForgetSpec(time_window=(2000, 1990))
    with pytest.raises(ValueError, match="duplicate series"):
        ForgetSpec(series_ids=[1, 1])
    with pytest.raises(ValueError, match="exactly one"):
        ForgetSpec(time_window=(1, 2), series_ids=[0])
    with pytest.raises(ForgetSpecError, match="unknown series ids \\[7\\]"):
        UnlearningTask.build(series_split, ForgetSpec(series_ids=[7]))
    with pytest.raises(ForgetSpecError, match="empty"):
        UnlearningTask.build(series_split, ForgetSpec(time_window=(1800, 1801)))
    with pytest.raises(ForgetSpecError, match="every training row"):
        UnlearningTask.build(series_split, ForgetSpec(series_ids=[0, 1, 2, 3]))
    wage = load_data("wage", seed=0)
    with pytest.raises(ForgetSpecError, match="per-row times"):
        UnlearningTask.build(wage, ForgetSpec(time_window=(0, 1)))
    with pytest.raises(ForgetSpecError, match="series ids"):
        UnlearningTask.build(wage, ForgetSpec(series_ids=[0]))


@pytest.mark.parametrize(
    ("name", "rows", "shape", "target_range"),
    [
        ("wage", 3000, (23,), (18, 80)),
        ("co2", 2232, (52, 1), (310, 375)),
        ("sunspots", 287, (22, 1), (0, 200)),
        ("elecdemand", 8736, (24, 3), (2.5, 9.5)),
        ("arrivals", 476, (8, 1), (0, 600)),
    ],
)
def test_bundled_regression_loaders(name, rows, shape, target_range):
    data = BUNDLED[name]()
    assert data.kind == "regression" and len(data) == rows and data.input_shape == shape
    assert target_range[0] <= float(data.y.min()) and float(data.y.max()) <= target_range[1]
    if name != "wage":
        assert data.times is not None and "time_unit" in data.meta
        per_series = data.series if data.series is not None else torch.zeros(rows, dtype=torch.long)
        for s in per_series.unique():
            assert (data.times[per_series == s].diff() > 0).all()


def test_unit_loss_is_task_loss_over_target_variance():
    y = torch.tensor([0.0, 10.0, 20.0])
    out = torch.tensor([[1.0], [12.0], [17.0]])
    assert float(unit_loss("regression", y)(out, y)) == pytest.approx((1 + 4 + 9) / 3 / 100.0)
    assert float(unit_loss("regression", y, "l1")(out, y)) == pytest.approx((1 + 2 + 3) / 3 / 10.0)
    logits = torch.randn(3, 4)
    labels = torch.tensor([0, 1, 3])
    assert float(unit_loss("classification", labels)(logits, labels)) == float(
        task_loss("classification")(logits, labels)
    )
