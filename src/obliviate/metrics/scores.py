"""Per-example scores read off a model's outputs, shared by the attacks and distances.

All take raw logits (rows = examples) and work in log space, so confident models
(p_y within 1e-8 of one) give finite, exact values rather than ``log(0)``.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

LN2 = math.log(2.0)


def true_class_confidence(logits: Tensor, y: Tensor) -> Tensor:
    """Softmax probability of the true class, p_y."""
    return torch.softmax(logits.double(), dim=1).gather(1, y.long().view(-1, 1)).squeeze(1)


def _others(logits: Tensor, y: Tensor) -> Tensor:
    """The logits with the true class masked to -inf."""
    mask = torch.zeros_like(logits, dtype=torch.bool).scatter_(1, y.long().view(-1, 1), True)
    return logits.masked_fill(mask, float("-inf"))


def logit_confidence(logits: Tensor, y: Tensor) -> Tensor:
    """ln p_y - ln(1 - p_y) = z_y - logsumexp_{j != y} z_j: the logit-scaled confidence of
    LiRA and the NeurIPS 2023 challenge, computed without forming 1 - p_y."""
    z = logits.double()
    return z.gather(1, y.long().view(-1, 1)).squeeze(1) - torch.logsumexp(_others(z, y), dim=1)


def margin(logits: Tensor, y: Tensor) -> Tensor:
    """z_y - max_{j != y} z_j: the correct-class margin used by KLoM."""
    z = logits.double()
    return z.gather(1, y.long().view(-1, 1)).squeeze(1) - _others(z, y).max(dim=1).values


def js_divergence(logits_p: Tensor, logits_q: Tensor) -> Tensor:
    """Per-row Jensen-Shannon divergence between two softmax distributions, in nats.

    JS = (KL(p || m) + KL(q || m)) / 2 with m = (p + q) / 2, so 0 <= JS <= ln 2.
    """
    lp = torch.log_softmax(logits_p.double(), dim=1)
    lq = torch.log_softmax(logits_q.double(), dim=1)
    lm = torch.logaddexp(lp, lq) - LN2
    kl_pm = (lp.exp() * (lp - lm)).sum(1)
    kl_qm = (lq.exp() * (lq - lm)).sum(1)
    return (0.5 * (kl_pm + kl_qm)).clamp(0.0, LN2)
