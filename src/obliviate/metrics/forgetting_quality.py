"""Forgetting quality F and the final score of the NeurIPS 2023 unlearning challenge (DESIGN section 5).

Unlike the per-model metrics of ``evaluate``, F compares two *ensembles*: N models unlearned
with different seeds and N models retrained with different seeds. For every forget example
the two samples of N logit-scaled confidences are attacked with every threshold; the best
attack's error rates give a differential-privacy style epsilon, and F rewards small ones.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np
from torch import nn

from obliviate.forget import UnlearningTask
from obliviate.metrics.scores import logit_confidence, margin
from obliviate.training import accuracy, predict

DELTA = 1e-5
BIN_WIDTH = 0.5


def _epsilon(fpr: np.ndarray, fnr: np.ndarray, n_neg: int, n_pos: int, delta: float) -> np.ndarray:
    """Epsilon of each attack. An error rate measured on N models cannot be resolved below 1/N,
    so rates are floored there: a perfect attack then scores the ceiling ln(N - 1) rather than
    infinity, and a method whose N outputs coincide (no randomness) is still caught."""
    fpr = np.maximum(fpr, 1.0 / n_neg)
    fnr = np.maximum(fnr, 1.0 / n_pos)
    with np.errstate(divide="ignore", invalid="ignore"):
        e1 = np.log(1.0 - delta - fpr) - np.log(fnr)
        e2 = np.log(1.0 - delta - fnr) - np.log(fpr)
    return np.fmax(e1, e2)  # NaN (log of a negative) only where both are: such an attack bounds nothing


def example_epsilons(unlearned: np.ndarray, retrained: np.ndarray, delta: float = DELTA) -> np.ndarray:
    """Per-example epsilon from [N, n] and [M, n] score arrays (models x examples).

    The attacks are every threshold rule "unlearned if score >= t" and its complement,
    t ranging over the observed scores; the strongest attack sets the example's epsilon,
    which with N models per side cannot exceed ln(N - 1) (the estimate's ceiling).
    """
    unlearned, retrained = np.asarray(unlearned, float), np.asarray(retrained, float)
    if unlearned.ndim != 2 or retrained.ndim != 2 or unlearned.shape[1] != retrained.shape[1]:
        raise ValueError(
            f"need [models, examples] arrays with equal examples; got {unlearned.shape}, {retrained.shape}"
        )
    if min(len(unlearned), len(retrained)) < 2:
        raise ValueError("forgetting quality needs at least 2 unlearned and 2 retrained models")
    n = unlearned.shape[1]
    thresholds = np.concatenate([unlearned, retrained])  # [T, n]
    out = np.empty(n)
    chunk = max(1, 4_000_000 // (len(thresholds) * max(len(unlearned), len(retrained))))
    for lo in range(0, n, chunk):
        t = thresholds[:, None, lo : lo + chunk]
        hit_u = (unlearned[None, :, lo : lo + chunk] >= t).mean(1)  # [T, chunk]
        hit_r = (retrained[None, :, lo : lo + chunk] >= t).mean(1)
        # rule ">= t" says unlearned: FPR = retrained hit, FNR = unlearned miss; the complement swaps
        m, k = len(retrained), len(unlearned)
        eps = np.concatenate([_epsilon(hit_r, 1.0 - hit_u, m, k, delta), _epsilon(1.0 - hit_r, hit_u, m, k, delta)])
        best = np.nanmax(np.where(np.isnan(eps), -np.inf, eps), axis=0)
        out[lo : lo + chunk] = np.maximum(best, 0.0)
    return out


def bin_scores(epsilons: np.ndarray, width: float = BIN_WIDTH) -> np.ndarray:
    """2 / 2^bin with bins [0, w), [w, 2w), ... numbered from 1: 1 for epsilon < w, halving per bin."""
    return np.exp2(-np.floor(np.asarray(epsilons, float) / width))


def forgetting_quality(unlearned: np.ndarray, retrained: np.ndarray, delta: float = DELTA) -> float:
    """F: the mean bin score over forget examples, in (0, 1]; 1 = no attack tells the ensembles apart."""
    return float(bin_scores(example_epsilons(unlearned, retrained, delta)).mean())


@dataclass
class ModelScores:
    """What F, KLoM and U-LiRA need from one model: small arrays, cheap to ship between processes."""

    confidence: np.ndarray
    """logit-scaled confidence on each forget row"""
    margin: np.ndarray
    """correct-class margin on each forget row"""
    retain_acc: float
    test_acc: float


def score_model(model: nn.Module, task: UnlearningTask, device=None) -> ModelScores:
    logits = predict(model, task.forget, device=device)
    y = task.forget.y
    return ModelScores(
        logit_confidence(logits, y).numpy(),
        margin(logits, y).numpy(),
        accuracy(model, task.retain, device),
        accuracy(model, task.test, device),
    )


@dataclass
class ForgettingQuality:
    f: float
    final_score: float
    n_models: int
    epsilon_ceiling: float
    retain_acc_ratio: float
    test_acc_ratio: float
    median_epsilon: float

    def to_dict(self) -> dict:
        return asdict(self)


def final_score(f: float, retain_acc_u: float, retain_acc_s: float, test_acc_u: float, test_acc_s: float) -> float:
    """F x (RA_u / RA_s) x (TA_u / TA_s): forgetting quality discounted by lost utility."""
    return f * (retain_acc_u / retain_acc_s) * (test_acc_u / test_acc_s)


def quality_from_scores(
    unlearned: Sequence[ModelScores], retrained: Sequence[ModelScores], delta: float = DELTA
) -> ForgettingQuality:
    """F and the final score from the scores of N unlearned and N retrained models."""
    if len(unlearned) != len(retrained):
        raise ValueError(f"need as many unlearned as retrained models, got {len(unlearned)} and {len(retrained)}")
    eps = example_epsilons(
        np.stack([s.confidence for s in unlearned]), np.stack([s.confidence for s in retrained]), delta
    )
    f = float(bin_scores(eps).mean())

    def mean(group, attr):
        return float(np.mean([getattr(s, attr) for s in group]))

    ra = mean(unlearned, "retain_acc") / mean(retrained, "retain_acc")
    ta = mean(unlearned, "test_acc") / mean(retrained, "test_acc")
    n = len(unlearned)
    return ForgettingQuality(f, f * ra * ta, n, math.log(n - 1), ra, ta, float(np.median(eps)))


def evaluate_ensembles(
    task: UnlearningTask,
    unlearned: Sequence[nn.Module],
    retrained: Sequence[nn.Module],
    delta: float = DELTA,
    device="cpu",
) -> ForgettingQuality:
    """F and the final score of N unlearned against N retrained models on ``task``'s forget set."""
    return quality_from_scores(
        [score_model(m, task, device) for m in unlearned], [score_model(m, task, device) for m in retrained], delta
    )
