"""Data sets over tensors, memory-mapped files and torch data sets, read through one loader."""

from __future__ import annotations

import pickle

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset
from torch.utils.data import Dataset as TorchDataset

from obliviate import Dataset, DataSplit, ForgetSpec, UnlearningTask, evaluate, fit, unlearn
from obliviate.data import NpyArray, concat, iterate, take
from obliviate.training import TrainConfig


class DictImages(TorchDataset):
    """A user's data set returning dicts; counts item reads."""

    def __init__(self, n: int = 40, seed: int = 0):
        g = torch.Generator().manual_seed(seed)
        self.images = torch.randint(0, 256, (n, 1, 4, 4), generator=g, dtype=torch.uint8)
        self.labels = torch.arange(n) % 3
        self.reads = 0

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> dict:
        self.reads += 1
        return {"pixels": self.images[i], "label": int(self.labels[i])}


class PixelNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(16, 3)

    def forward(self, pixels):
        return {"logits": self.fc(pixels.flatten(1))}


def test_inputs_keep_their_dtype_and_uint8_is_scaled_per_batch():
    images = torch.randint(0, 256, (10, 1, 2, 2), dtype=torch.uint8)
    data = Dataset(images, torch.arange(10) % 2)
    assert data.X.dtype == torch.uint8 and data.input_dtype == torch.float32 and data.continuous_inputs
    batch = next(iterate(data, 4))
    assert batch.x.dtype == torch.float32 and torch.allclose(batch.x, images[:4].float() / 255)
    ids = Dataset(torch.randint(0, 50, (10, 7)), torch.arange(10) % 2)
    assert ids.X.dtype == torch.int64 and next(iterate(ids, 4)).x.dtype == torch.int64 and not ids.continuous_inputs


def test_views_are_index_backed_and_carry_keys():
    X = torch.randn(20, 3)
    data = Dataset(X, torch.arange(20) % 4, keys=[f"k{i}" for i in range(20)])
    view = data.subset([5, 2, 9]).subset([2, 0])
    assert view.source is data.source  # no copy of the inputs
    assert torch.equal(view.X, X[[9, 5]]) and view.keys.tolist() == ["k9", "k5"]
    batch = take(view, torch.tensor([1]))
    assert torch.equal(batch.x, X[[5]]) and batch.y.tolist() == [1]
    task = UnlearningTask.build(DataSplit(data, data.subset([0, 1])), ForgetSpec(keys=["k3", "k7"]))
    assert task.forget.source is data.source and task.forget.keys.tolist() == ["k3", "k7"]


def test_shuffled_iteration_covers_every_row_once_and_repeats_with_a_seed():
    data = Dataset(torch.arange(23.0).unsqueeze(1), torch.zeros(23))
    order = [torch.cat([b.x[:, 0] for b in iterate(data, 5, shuffle=True, generator=torch.Generator().manual_seed(1))])]
    order.append(
        torch.cat([b.x[:, 0] for b in iterate(data, 5, shuffle=True, generator=torch.Generator().manual_seed(1))])
    )
    assert torch.equal(order[0], order[1]) and sorted(order[0].tolist()) == list(range(23))
    assert not torch.equal(order[0], torch.arange(23.0))


def test_torch_dataset_labels_are_read_once_and_dict_batches_reach_the_model():
    train, test = DictImages(40), DictImages(12, seed=1)
    split = DataSplit.from_torch(train, test, class_names=["a", "b", "c"], keys=[1000 + i for i in range(40)])
    assert train.reads == 41  # one pass for the labels, one row for the input shape
    assert split.train.num_classes == 3 and split.train.streamed
    assert split.train.input_shape == (1, 4, 4) and split.train.input_dtype is None  # dict inputs
    batch = next(iterate(split.train, 8))
    assert batch.x["pixels"].dtype == torch.float32 and float(batch.x["pixels"].max()) <= 1.0
    model = PixelNet()
    fit(model, split.train, TrainConfig(epochs=2, batch_size=8))
    task = UnlearningTask.build(split, ForgetSpec(keys=[1000, 1003, 1006]))
    assert task.forget.y.tolist() == [0, 0, 0]
    result = unlearn(model, task, "finetune", epochs=1)
    report = evaluate(task, {"original": model, "finetune": result.model}, reference=None)
    assert set(report.models) == {"original", "finetune"} and "forget_acc" in report.models["finetune"].metrics


def test_targets_attribute_spares_the_label_pass_and_workers_read_batches():
    class WithTargets(DictImages):
        @property
        def targets(self):
            return self.labels

    data = WithTargets(30)
    wrapped = Dataset.from_torch(data, num_workers=1)
    assert data.reads == 0 and wrapped.y.tolist() == data.labels.tolist()
    xs = torch.cat([b.x["pixels"] for b in iterate(wrapped.subset(range(10, 30)), 8)])
    assert torch.allclose(xs, data.images[10:30].float() / 255)


def test_plain_torch_objects_are_accepted_where_data_goes():
    X, y = torch.randn(60, 5), torch.arange(60) % 2
    split = DataSplit(TensorDataset(X[:48], y[:48]), TensorDataset(X[48:], y[48:]))
    assert split.train.in_memory and split.train.kind == "classification"
    task = UnlearningTask.build((TensorDataset(X[:48], y[:48]), TensorDataset(X[48:], y[48:])), ForgetSpec(indices=[0]))
    model = nn.Linear(5, 2)
    result = fit(model, DataLoader(TensorDataset(X, y), batch_size=16, shuffle=True), TrainConfig(epochs=2))
    assert result.steps == 8 and len(result.history) == 2
    assert len(task.forget) == 1


def test_memory_mapped_inputs_stream_and_match_the_in_memory_path(tmp_path):
    X = np.random.default_rng(0).normal(size=(50, 6)).astype(np.float32)
    np.save(tmp_path / "x.npy", X)
    source = NpyArray(tmp_path / "x.npy")
    mapped = Dataset(source, torch.arange(50) % 3)
    memory = Dataset(torch.from_numpy(X), torch.arange(50) % 3)
    assert not mapped.in_memory and not mapped.streamed and mapped.input_shape == (6,)
    gen = [torch.Generator().manual_seed(4) for _ in range(2)]
    a = list(iterate(mapped.subset(range(5, 50)), 7, shuffle=True, generator=gen[0]))
    b = list(iterate(memory.subset(range(5, 50)), 7, shuffle=True, generator=gen[1]))
    for p, q in zip(a, b, strict=True):  # the same rows per batch; the mapped ones come in file order
        assert sorted(p.index.tolist()) == sorted(q.index.tolist()) and p.index.tolist() == sorted(p.index.tolist())
        assert torch.equal(p.x, torch.from_numpy(X[5:])[p.index]) and torch.equal(p.y, (p.index + 5) % 3)
    clone = pickle.loads(pickle.dumps(source))  # what a loader worker receives
    assert np.array_equal(clone.take(np.array([3, 1])).numpy(), X[[3, 1]])
    assert mapped.fingerprint() != mapped.subset(range(10)).fingerprint()


def test_concat_keeps_shared_inputs_as_one_view_and_chains_the_rest():
    base = Dataset(torch.randn(10, 2), torch.arange(10) % 2)
    both = concat([base.subset([1, 2]), base.subset([7]).with_targets(torch.tensor([0]))])
    assert both.source is base.source and both.y.tolist() == [1, 0, 0]

    class Pairs(TorchDataset):
        def __len__(self):
            return 3

        def __getitem__(self, i):
            return torch.full((2,), float(i)), 1

    chained = concat([base.subset([0]), Dataset.from_torch(Pairs())])
    assert chained.streamed and chained.y.tolist() == [0, 1, 1, 1]
    assert torch.equal(chained.X, torch.cat([base.X[:1], torch.tensor([[0.0, 0.0], [1.0, 1.0], [2.0, 2.0]])]))
