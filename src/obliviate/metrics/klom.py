"""KLoM (Georgiev et al. 2024): per-example KL divergence between the margin distributions of N
unlearned and N retrained models, summarised by its 95th percentile over the forget rows."""

from __future__ import annotations

import numpy as np

PSEUDO_COUNT = 1.0
"""Added to every bin's count (Laplace smoothing): with tens of models per side most bins are
empty, and without it one stray margin would dominate the KL."""


def example_klom(unlearned: np.ndarray, retrained: np.ndarray, bins: int = 10) -> np.ndarray:
    """KL(unlearned || retrained) per example (nats) from [N, n] and [M, n] margin arrays.

    Both histograms share ``bins`` equal-width bins spanning the pooled margins of the example,
    each count smoothed by ``PSEUDO_COUNT``; an example where every model gives the same margin
    has KL 0.
    """
    unlearned, retrained = np.asarray(unlearned, float), np.asarray(retrained, float)
    if unlearned.shape[1:] != retrained.shape[1:] or unlearned.ndim != 2:
        raise ValueError(
            f"need [models, examples] arrays with equal examples; got {unlearned.shape}, {retrained.shape}"
        )
    pooled = np.concatenate([unlearned, retrained])
    lo, hi = pooled.min(0), pooled.max(0)
    width = np.where(hi > lo, (hi - lo) / bins, 1.0)

    def hist(sample: np.ndarray) -> np.ndarray:
        idx = np.clip(np.floor((sample - lo) / width).astype(int), 0, bins - 1)  # [N, n]; max lands in the last bin
        counts = np.zeros((bins, sample.shape[1]))
        np.add.at(counts, (idx, np.broadcast_to(np.arange(sample.shape[1]), idx.shape)), 1.0)
        return (counts + PSEUDO_COUNT) / (len(sample) + bins * PSEUDO_COUNT)

    p, q = hist(unlearned), hist(retrained)
    return (p * np.log(p / q)).sum(0)


def klom(unlearned: np.ndarray, retrained: np.ndarray, bins: int = 10, percentile: float = 95.0) -> float:
    """The ``percentile`` of the per-example KLoM values (lower is better, 0 = indistinguishable)."""
    return float(np.percentile(example_klom(unlearned, retrained, bins), percentile))
