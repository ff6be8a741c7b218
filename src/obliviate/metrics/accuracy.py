"""Accuracy (classification) and MAE/MSE (regression) on each view."""

from __future__ import annotations

import math

from obliviate.metrics.base import VIEW_NAMES, MetricContext, metric


def _accuracy(ctx: MetricContext, view: str) -> float:
    out = ctx.outputs[view]
    if len(out) == 0:
        return math.nan
    return float((out.argmax(1) == ctx.labels(view)).float().mean() * 100)


def _errors(ctx: MetricContext, view: str):
    out = ctx.outputs[view]
    return (out[:, 0] if out.ndim > 1 else out) - ctx.labels(view)  # (n, 1) or (n,); n may be 0


for _view in VIEW_NAMES:

    @metric(
        f"{_view}_acc",
        direction="reference",
        kinds=("classification",),
        description=f"accuracy on the {_view.replace('_', '-')} rows, percent",
    )
    def _acc(ctx: MetricContext, view: str = _view) -> float:
        return _accuracy(ctx, view)

    @metric(
        f"{_view}_mae",
        direction="reference",
        kinds=("regression",),
        description=f"mean absolute error on the {_view.replace('_', '-')} rows",
    )
    def _mae(ctx: MetricContext, view: str = _view) -> float:
        err = _errors(ctx, view)
        return float(err.abs().mean()) if len(err) else math.nan

    @metric(
        f"{_view}_mse",
        direction="reference",
        kinds=("regression",),
        description=f"mean squared error on the {_view.replace('_', '-')} rows",
    )
    def _mse(ctx: MetricContext, view: str = _view) -> float:
        err = _errors(ctx, view)
        return float((err**2).mean()) if len(err) else math.nan
