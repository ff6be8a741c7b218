"""SISA: forgetting retrains only the affected shard from the right checkpoint, and is exact."""

from __future__ import annotations

import copy

import pytest
import torch
from pipeline_helpers import RECIPE

from obliviate import ForgetSpec, UnlearningTask, build_model, load_data, unlearn
from obliviate.checkpoint import load_model, save_model
from obliviate.methods import MethodError
from obliviate.methods.sisa import SISAEnsemble, train_sisa
from obliviate.training import accuracy


@pytest.fixture(scope="module")
def split():
    return load_data("digits")


@pytest.fixture(scope="module")
def ensemble(split):
    torch.manual_seed(0)
    template = build_model("mlp", split.train.input_shape, 10, hidden=[32])
    return train_sisa(template, split.train, shards=3, slices=3, recipe=RECIPE, seed=0)[0]


def _weights(module):
    return [p.detach().clone() for p in module.parameters()]


def _same(a, b, atol=0.0) -> bool:
    return all(torch.allclose(x, y, rtol=0, atol=atol) for x, y in zip(_weights(a), _weights(b), strict=True))


def test_partition_covers_every_row_once(ensemble, split):
    codes = ensemble.assignment
    assert len(codes) == len(split.train) and codes.min() >= 0 and codes.max() < 9
    sizes = ensemble.shard_sizes()
    assert sizes.sum() == len(split.train) and sizes.max() - sizes.min() <= 1


def test_forgetting_one_row_retrains_only_its_shard_from_its_slice(ensemble, split):
    row = int(torch.nonzero(ensemble.assignment == 1 * 3 + 1)[0])  # shard 1, slice 1
    task = UnlearningTask.build(split, ForgetSpec(indices=[row]))
    result = unlearn(ensemble, task, "sisa")
    new = result.model
    for s in (0, 2):
        for j in range(3):
            assert _same(ensemble.stages[s][j], new.stages[s][j])
    assert _same(ensemble.stages[1][0], new.stages[1][0]) and not _same(ensemble.stages[1][2], new.stages[1][2])
    assert len(new.assignment) == len(split.train) - 1 and len(ensemble.assignment) == len(split.train)
    # Exactness: the same as retraining that whole shard from scratch without the row.
    reference = copy.deepcopy(ensemble)
    reference.assignment[row] = -1
    reference.retrain_shard(1, 0, split.train, seed=0, device="cpu")
    assert _same(reference.stages[1][2], new.stages[1][2], atol=1e-6)
    # Cost: one shard from slice 1 of 3, far fewer steps than the ensemble's full training.
    full_steps = sum(
        -(-int(((ensemble.assignment // 3 == s) & (ensemble.assignment % 3 <= j)).sum()) // RECIPE.batch_size)
        * ensemble.stage_recipe(s, j, 0).epochs
        for s in range(3)
        for j in range(3)
    )
    assert 0 < result.log.steps < full_steps / 3


def test_class_forgetting_is_exact_and_keeps_the_rest(ensemble, split):
    task = UnlearningTask.build(split, ForgetSpec(classes=[3]))
    before_retain = accuracy(ensemble, task.retain_test)
    model = unlearn(ensemble, task, "sisa").model
    assert accuracy(model, task.forget) <= 2.0, "no shard saw class 3 after retraining"
    assert accuracy(model, task.forget_test) <= 2.0
    assert accuracy(model, task.retain_test) >= before_retain - 5


def test_ensemble_accuracy_close_to_single_model(ensemble, split):
    torch.manual_seed(0)
    from obliviate.training import fit

    single = fit(build_model("mlp", split.train.input_shape, 10, hidden=[32]), split.train, RECIPE).model
    assert accuracy(ensemble, split.test) >= accuracy(single, split.test) - 10


def test_save_load_round_trip_and_vote(ensemble, split, tmp_path):
    save_model(tmp_path / "e.safetensors", ensemble, {})
    loaded, card = load_model(tmp_path / "e.safetensors")
    assert isinstance(loaded, SISAEnsemble) and torch.equal(loaded.assignment, ensemble.assignment)
    X = split.test.X[:50]
    assert torch.allclose(loaded(X), ensemble(X))
    voter = copy.deepcopy(ensemble)
    voter.aggregation = "vote"
    assert (voter(X).exp().sum(1) - 1).abs().max() < 1e-4


def test_plain_model_gets_an_ensemble_trained_without_the_rows(split):
    torch.manual_seed(0)
    plain = build_model("mlp", split.train.input_shape, 10, hidden=[16])
    task = UnlearningTask.build(split, ForgetSpec(indices=list(range(10))))
    result = unlearn(plain, task, "sisa", shards=2, slices=2, recipe={"epochs": 2})
    assert isinstance(result.model, SISAEnsemble) and len(result.model.assignment) == len(split.train) - 10


def test_mismatched_rows_are_refused(ensemble):
    other = load_data("digits", seed=1)
    small = other.train.subset(torch.arange(100))
    from obliviate.data import DataSplit

    task = UnlearningTask.build(DataSplit(small, other.test), ForgetSpec(indices=[0]))
    with pytest.raises(MethodError, match=f"holds {len(ensemble.assignment)} rows but the task's training set has 100"):
        unlearn(ensemble, task, "sisa")
