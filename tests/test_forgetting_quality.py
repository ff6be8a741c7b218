"""Forgetting quality F of the NeurIPS 2023 challenge: hand-computed epsilons and sanity on real ensembles."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from obliviate import ForgetSpec, TrainConfig, UnlearningTask, build_model, fit
from obliviate.data import Dataset, split_dataset
from obliviate.metrics.forgetting_quality import (
    DELTA,
    ModelScores,
    bin_scores,
    evaluate_ensembles,
    example_epsilons,
    final_score,
    forgetting_quality,
    quality_from_scores,
)


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def test_epsilon_by_hand_reaches_the_ceiling():
    # N = 4 per side. Sorted: 0 R, 0.5 U, 1 R, 2 R, 3 U, 4 U, 5 U, 6 R. The rule "unlearned if
    # score >= 3" has FPR 1/4 (the 6) and FNR 1/4 (the 0.5): eps = ln((1 - delta - 1/4) / (1/4)),
    # the largest of all thresholds, and the ceiling ln(N - 1) up to delta.
    u = np.array([[3.0], [4.0], [5.0], [0.5]])
    r = np.array([[0.0], [1.0], [2.0], [6.0]])
    eps = example_epsilons(u, r)
    assert eps[0] == pytest.approx(math.log((1 - DELTA - 0.25) / 0.25))
    assert eps[0] == pytest.approx(math.log(3), abs=1e-4)
    assert forgetting_quality(u, r) == 0.25  # bin [1, 1.5) is the third: 2 / 2^3


def test_epsilon_edge_cases():
    # a threshold with no errors at all: both rates floored at 1/N, so the ceiling ln(N - 1)
    separated = example_epsilons(np.array([[5.0], [6.0], [7.0], [8.0]]), np.array([[1.0], [2.0], [3.0], [4.0]]))
    assert separated[0] == pytest.approx(math.log((1 - DELTA - 0.25) / 0.25))
    # a method without randomness (all N outputs equal) is caught even inside the retrained range:
    # ">= 0" has FNR 0 -> 1/4 and FPR 2/4, so eps = ln((1 - delta - 1/2) / (1/4)) = ln 2
    point = example_epsilons(np.zeros((4, 1)), np.array([[-2.0], [-1.0], [1.0], [2.0]]))
    assert point[0] == pytest.approx(math.log((1 - DELTA - 0.5) / 0.25))
    # interleaved 1 U, 2 R, 3 U, 4 R: every attack with both rates non-zero is no better than chance
    assert example_epsilons(np.array([[1.0], [3.0]]), np.array([[2.0], [4.0]]))[0] == 0.0
    same = np.random.default_rng(0).normal(size=(6, 30))
    assert forgetting_quality(same, same) == 1.0  # identical models: top score
    with pytest.raises(ValueError, match="at least 2"):
        example_epsilons(np.zeros((1, 3)), np.zeros((1, 3)))


def test_bin_scores_and_final_score_by_hand():
    assert bin_scores(np.array([0.0, 0.49, 0.5, 1.2, 3.4])).tolist() == [1.0, 1.0, 0.5, 0.25, 2.0**-6]
    assert final_score(0.5, 90.0, 100.0, 80.0, 100.0) == pytest.approx(0.5 * 0.9 * 0.8)
    s = [ModelScores(np.array([0.0, 1.0]), np.zeros(2), 90.0, 80.0)] * 2
    ref = [ModelScores(np.array([0.0, 1.0]), np.zeros(2), 100.0, 100.0)] * 2
    q = quality_from_scores(s, ref)
    assert (q.f, q.n_models, q.epsilon_ceiling) == (1.0, 2, 0.0)
    assert q.final_score == pytest.approx(0.72)


@pytest.fixture(scope="module")
def ensembles():
    """N = 6 retrained models twice over, and 6 originals that never forgot. The labels are random,
    so the originals can only fit the forget rows by memorising them: a clear trace to find."""
    gen = torch.Generator().manual_seed(0)
    data = Dataset(torch.randn(240, 16, generator=gen), torch.randint(0, 4, (240,), generator=gen), name="noise")
    task = UnlearningTask.build(split_dataset(data, 0.25, seed=0), ForgetSpec(fraction=0.1, seed=0))

    def train(rows, seed):
        recipe = TrainConfig(lr=5e-3, epochs=40, batch_size=32, seed=seed)
        return fit(build_model("mlp", task.input_shape, 4, hidden=(128,)), rows, recipe).model

    n = 6
    return (
        task,
        [train(task.retain, s) for s in range(n)],
        [train(task.retain, 100 + s) for s in range(n)],
        [train(task.train, 200 + s) for s in range(n)],
    )


def test_forgetting_quality_sanity_on_models(ensembles):
    task, reference, retrained, originals = ensembles
    same = evaluate_ensembles(task, reference, reference)
    assert same.f == 1.0 and same.final_score == 1.0
    fair = evaluate_ensembles(task, retrained, reference)
    unfair = evaluate_ensembles(task, originals, reference)
    assert fair.n_models == 6 and fair.epsilon_ceiling == pytest.approx(math.log(5))
    assert fair.f > unfair.f + 0.1, (fair, unfair)  # models that never forgot are told apart more often
    assert unfair.median_epsilon > fair.median_epsilon
