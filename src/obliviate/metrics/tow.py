"""Tug of War (ToW): one number that rewards matching the retrained model on forget, retain and test."""

from __future__ import annotations

import torch

from obliviate.metrics.base import MetricContext, metric

TOW_VIEWS = ("forget", "retain", "test")


def _acc(outputs: torch.Tensor, y: torch.Tensor) -> float:
    return float((outputs.argmax(1) == y).double().mean() * 100)


def tow_score(model_acc: dict[str, float], reference_acc: dict[str, float]) -> float:
    """Product over forget/retain/test of (1 - |acc_u - acc_s| / 100); 1 means identical accuracies."""
    score = 1.0
    for view in TOW_VIEWS:
        score *= 1.0 - abs(model_acc[view] - reference_acc[view]) / 100.0
    return score


@metric(
    "tow",
    direction="higher",
    kinds=("classification",),
    description="tug of war: product of (1 - accuracy gap to the reference) on forget, retain, test; 1 is best",
)
def tow(ctx: MetricContext) -> float | None:
    if ctx.reference is None:
        return None
    ys = {v: ctx.labels(v) for v in TOW_VIEWS}
    return tow_score(
        {v: _acc(ctx.outputs[v], ys[v]) for v in TOW_VIEWS},
        {v: _acc(ctx.reference[v], ys[v]) for v in TOW_VIEWS},
    )
