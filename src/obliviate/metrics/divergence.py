"""Output-distribution distances on the forget rows: ZRF, JS to the reference, activation distance."""

from __future__ import annotations

import torch

from obliviate.metrics.base import MetricContext, metric
from obliviate.metrics.scores import js_divergence
from obliviate.models import fresh_copy
from obliviate.training import predict


def random_model_outputs(ctx: MetricContext, view: str = "forget") -> torch.Tensor:
    """Outputs of a randomly initialised model of the same architecture (frozen layers too),
    seeded by ``ctx.seed`` so every model in one evaluation is compared with the same random
    network; the global RNG is left as it was."""
    rand = fresh_copy(ctx.model, seed=ctx.seed, keep_frozen=False)
    return predict(rand, getattr(ctx.task, view), device=ctx.device)


def zrf_score(logits: torch.Tensor, random_logits: torch.Tensor) -> float:
    """1 - mean JS(model, random model), JS in nats: 1 - ln 2 (about 0.307) when the outputs are
    as far as they can be, 1 when the model answers exactly like the random network."""
    if len(logits) == 0:
        return float("nan")
    return float(1.0 - js_divergence(logits, random_logits).mean())


@metric(
    "zrf",
    direction="reference",
    kinds=("classification",),
    description="ZRF: 1 - mean JS (nats) to a random model of the same architecture on forget rows",
)
def zrf(ctx: MetricContext) -> float:
    return zrf_score(ctx.outputs["forget"], random_model_outputs(ctx))


@metric(
    "js_reference",
    direction="lower",
    kinds=("classification",),
    description="mean JS divergence (nats, at most ln 2) to the retrained model's outputs on forget rows",
)
def js_reference(ctx: MetricContext) -> float | None:
    if ctx.reference is None or len(ctx.outputs["forget"]) == 0:
        return None
    return float(js_divergence(ctx.outputs["forget"], ctx.reference["forget"]).mean())


@metric(
    "activation_distance",
    direction="lower",
    kinds=("classification",),
    description="mean L2 distance between softmax outputs of the model and the retrained one on forget rows",
)
def activation_distance(ctx: MetricContext) -> float | None:
    if ctx.reference is None or len(ctx.outputs["forget"]) == 0:
        return None
    p = torch.softmax(ctx.outputs["forget"].double(), dim=1)
    q = torch.softmax(ctx.reference["forget"].double(), dim=1)
    return float((p - q).norm(dim=1).mean())
