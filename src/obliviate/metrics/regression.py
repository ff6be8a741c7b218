"""Regression-only metrics: how far predictions on the forget rows are from the retrained
model's, and whether per-example loss still gives the forget rows away as members.

The regression Anamnesis Index (relearning steps until forget loss is within (1 + alpha) of
the original's) belongs with the general AIN metric, not here.
"""

from __future__ import annotations

import numpy as np
from scipy.stats import wasserstein_distance

from obliviate.metrics.base import MetricContext, metric
from obliviate.metrics.mia import entropy_attack
from obliviate.training import per_example_loss


def predictions(outputs) -> np.ndarray:
    """One prediction per row from cached regression outputs of shape (n,) or (n, 1)."""
    return (outputs[:, 0] if outputs.ndim > 1 else outputs).numpy().astype(np.float64)


@metric(
    "wasserstein",
    direction="lower",
    kinds=("regression",),
    description="W1 distance between this model's and the reference's predictions on the forget rows",
)
def wasserstein(ctx: MetricContext) -> float | None:
    if ctx.reference is None or len(ctx.outputs["forget"]) == 0:
        return None
    return float(wasserstein_distance(predictions(ctx.outputs["forget"]), predictions(ctx.reference["forget"])))


@metric(
    "mia_loss",
    direction="reference",
    kinds=("regression",),
    description="percent of forget rows a loss attack (retain vs test, logistic) calls member",
)
def mia_loss(ctx: MetricContext) -> float:
    """Percent of forget rows called member by a logistic attack on squared error, fitted on
    retain rows (members) vs test rows (non-members); forget rows are never in its training set."""
    kind = ctx.task.kind
    losses = {v: per_example_loss(ctx.outputs[v], ctx.labels(v), kind).numpy() for v in ("retain", "test", "forget")}
    return entropy_attack(losses["retain"], losses["test"], losses["forget"])
