"""ForgetSpec selectors, their error cases, and the task's views and access control."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from pydantic import ValidationError

from obliviate import DataAccessError, ForgetSpec, ForgetSpecError, UnlearningTask
from obliviate.data import Dataset, DataSplit, split_dataset


@pytest.fixture(scope="module")
def tiny_split():
    X = torch.arange(20, dtype=torch.float32).reshape(10, 2)
    y = torch.tensor([0, 0, 1, 1, 2, 2, 3, 3, 0, 1])
    train = Dataset(X, y, class_names=("a", "b", "c", "d"))
    test = Dataset(X[:6], y[:6], class_names=("a", "b", "c", "d"))
    return DataSplit(train, test)


def test_class_spec(tiny_split):
    task = UnlearningTask.build(tiny_split, ForgetSpec(classes=[1]))
    assert task.forget_idx.tolist() == [2, 3, 9]
    assert task.retain_idx.tolist() == [0, 1, 4, 5, 6, 7, 8]
    assert task.forget_test_idx.tolist() == [2, 3]
    assert len(task.retain_test) == 4 and task.forget_classes == [1]
    assert task.spec.scenario == "class"


def test_subclass_spec():
    X = torch.zeros(8, 2)
    fine = torch.tensor([0, 1, 2, 3, 0, 1, 2, 3])
    data = Dataset(X, fine, class_names=tuple("abcd")).group_classes([[0, 1], [2, 3]])
    split = DataSplit(data, data)
    task = UnlearningTask.build(split, ForgetSpec(subclass=(0, 1)))
    assert task.forget_idx.tolist() == [1, 5] and task.forget_classes == []
    with pytest.raises(ForgetSpecError, match="not part of super-class"):
        UnlearningTask.build(split, ForgetSpec(subclass=(1, 1)))
    plain = DataSplit(Dataset(X, fine), Dataset(X, fine))
    with pytest.raises(ForgetSpecError, match="sub-class labels"):
        UnlearningTask.build(plain, ForgetSpec(subclass=(0, 1)))


def test_indices_and_fraction(tiny_split):
    task = UnlearningTask.build(tiny_split, ForgetSpec(indices=[7, 1]))
    assert task.forget_idx.tolist() == [1, 7] and len(task.forget_test) == 0
    a = UnlearningTask.build(tiny_split, ForgetSpec(fraction=0.3, seed=4))
    b = UnlearningTask.build(tiny_split, ForgetSpec(fraction=0.3, seed=4))
    assert len(a.forget_idx) == 3 and torch.equal(a.forget_idx, b.forget_idx)
    assert a.spec.scenario == "random"


def test_target_range():
    X = torch.zeros(6, 1)
    data = Dataset(X, torch.tensor([1.0, 2.0, 3.0, 4.0, 5.0, 6.0]), kind="regression")
    task = UnlearningTask.build(DataSplit(data, data), ForgetSpec(target_range=(2.5, 4.0)))
    assert task.forget_idx.tolist() == [2, 3] and task.forget_test_idx.tolist() == [2, 3]
    with pytest.raises(ForgetSpecError, match="empty"):
        UnlearningTask.build(DataSplit(data, data), ForgetSpec(target_range=(10, 11)))


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        (ForgetSpec(indices=[0, 10]), "out of range"),
        (ForgetSpec(indices=[-1]), "out of range"),
        (ForgetSpec(indices=[3, 3]), "duplicate"),
        (ForgetSpec(indices=[]), "empty"),
        (ForgetSpec(classes=[7]), "unknown classes"),
        (ForgetSpec(classes=[1, 1]), "duplicate classes"),
        (ForgetSpec(classes=[0, 1, 2, 3]), "every training row"),
        (ForgetSpec(target_range=(0, 1)), "regression"),
    ],
)
def test_spec_errors(tiny_split, spec, message):
    with pytest.raises(ForgetSpecError, match=message):
        UnlearningTask.build(tiny_split, spec)


def test_spec_validation():
    with pytest.raises(ValidationError, match="exactly one"):
        ForgetSpec()
    with pytest.raises(ValidationError, match="exactly one"):
        ForgetSpec(classes=[1], indices=[2])
    with pytest.raises(ValidationError):
        ForgetSpec(fraction=1.5)
    with pytest.raises(ValidationError, match="lower bound"):
        ForgetSpec(target_range=(3, 1))
    with pytest.raises(ValidationError):
        ForgetSpec(classes=[1], colour="red")
    spec = ForgetSpec(classes=[2])
    assert ForgetSpec.model_validate_json(spec.model_dump_json()) == spec


def test_view_enforces_needs(tiny_split):
    task = UnlearningTask.build(tiny_split, ForgetSpec(classes=[1]))
    view = task.view(frozenset({"retain"}))
    assert len(view.retain) == 7 and view.num_classes == 4 and view.forget_classes == [1]
    for name in ("forget", "train", "test", "forget_test"):
        with pytest.raises(DataAccessError, match=name):
            getattr(view, name)
    with pytest.raises(ValueError, match="unknown data views"):
        task.view(frozenset({"everything"}))


def test_keys_select_every_row_of_a_record_and_survive_the_split():
    data = Dataset(torch.rand(40, 3), torch.arange(40) % 2, keys=[f"p{i % 10}" for i in range(40)])
    split = split_dataset(data, 0.25, seed=1)
    task = UnlearningTask.build(split, ForgetSpec(keys=["p3", "p7"]))
    forgotten = split.train.keys[task.forget_idx.numpy()]
    assert set(forgotten) == {"p3", "p7"}
    assert len(forgotten) == int(np.isin(split.train.keys, ["p3", "p7"]).sum())
    assert not np.isin(split.train.keys[task.retain_idx.numpy()], ["p3", "p7"]).any()
    assert len(task.forget_test) == 0
    with pytest.raises(ForgetSpecError, match="unknown keys"):
        UnlearningTask.build(split, ForgetSpec(keys=["p3", "nobody"]))


def test_default_keys_are_row_numbers_of_the_data_as_given():
    data = Dataset(torch.rand(30, 2), torch.arange(30) % 3)
    split = split_dataset(data, 0.2, seed=0)
    assert sorted(np.concatenate([split.train.keys, split.test.keys]).tolist()) == list(range(30))
    assert torch.equal(split.train.X, data.X[torch.from_numpy(split.train.keys)])
