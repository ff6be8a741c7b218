"""Bundled loaders, file loaders (on files written here) and Dataset validation."""

from __future__ import annotations

import gzip
import pickle

import numpy as np
import pytest
import torch

from obliviate.data import (
    DataError,
    Dataset,
    load_cifar,
    load_csv,
    load_data,
    load_diabetes,
    load_digits,
    load_mnist5k,
    load_mnist_idx,
    load_npz,
    read_idx,
    split_dataset,
)


def test_digits_bundled():
    d = load_digits()
    assert d.X.shape == (1797, 1, 8, 8) and d.num_classes == 10
    assert float(d.X.min()) >= 0.0 and float(d.X.max()) <= 1.0


def test_mnist5k_bundled_is_balanced():
    d = load_mnist5k()
    assert d.X.shape == (5000, 1, 28, 28)
    assert torch.bincount(d.y).tolist() == [500] * 10


def test_mnist1d_is_generated_not_downloaded(monkeypatch):
    import requests

    def no_network(*args, **kwargs):
        raise AssertionError("mnist1d must not download")

    monkeypatch.setattr(requests, "get", no_network)
    d = load_data("mnist1d", seed=0)
    assert d.train.X.shape == (4000, 40) and d.test.X.shape == (1000, 40) and d.train.num_classes == 10
    assert torch.bincount(torch.cat([d.train.y, d.test.y])).tolist() == [500] * 10


def test_diabetes_is_regression():
    d = load_diabetes()
    assert d.kind == "regression" and d.num_outputs == 1 and d.X.shape == (442, 10)
    assert d.y.dtype == torch.float32


def test_split_is_stratified_seeded_and_disjoint():
    d = load_digits()
    a, b = split_dataset(d, 0.2, seed=1), split_dataset(d, 0.2, seed=1)
    assert torch.equal(a.train.X, b.train.X)
    assert len(a.train) + len(a.test) == len(d)
    counts = torch.bincount(a.test.y)
    assert counts.min() >= 35 and counts.max() <= 37
    c = split_dataset(d, 0.2, seed=2)
    assert not torch.equal(a.test.X, c.test.X)


def _write_idx(path, array: np.ndarray, gz: bool = False) -> None:
    codes = {np.uint8: 0x08}
    header = bytes([0, 0, codes[array.dtype.type], array.ndim])
    header += b"".join(int(n).to_bytes(4, "big") for n in array.shape)
    data = header + array.tobytes()
    if gz:
        with gzip.open(str(path) + ".gz", "wb") as fh:
            fh.write(data)
    else:
        path.write_bytes(data)


def test_mnist_idx_files(tmp_path):
    rng = np.random.default_rng(0)
    for prefix, n, gz in (("train", 12, False), ("t10k", 5, True)):
        _write_idx(tmp_path / f"{prefix}-images-idx3-ubyte", rng.integers(0, 256, (n, 28, 28), dtype=np.uint8), gz)
        _write_idx(tmp_path / f"{prefix}-labels-idx1-ubyte", rng.integers(0, 10, n, dtype=np.uint8), gz)
    split = load_mnist_idx(tmp_path)
    assert split.train.X.shape == (12, 1, 28, 28) and len(split.test) == 5
    images = read_idx(tmp_path / "train-images-idx3-ubyte")
    assert torch.allclose(split.train.X[:, 0], torch.tensor(images / 255.0, dtype=torch.float32))
    assert len(load_data(str(tmp_path)).train) == 12


def test_idx_rejects_bad_magic_and_truncation(tmp_path):
    bad = tmp_path / "bad"
    bad.write_bytes(b"\x01\x02\x08\x01\x00\x00\x00\x02ab")
    with pytest.raises(DataError, match="magic"):
        read_idx(bad)
    short = tmp_path / "short"
    short.write_bytes(bytes([0, 0, 8, 1]) + (10).to_bytes(4, "big") + b"abc")
    with pytest.raises(DataError, match="header says 10"):
        read_idx(short)


def _pickle(path, obj) -> None:
    with open(path, "wb") as fh:
        pickle.dump(obj, fh)


def test_cifar10_pickles(tmp_path):
    rng = np.random.default_rng(0)
    for i in (1, 2):
        _pickle(
            tmp_path / f"data_batch_{i}",
            {b"data": rng.integers(0, 256, (4, 3072), dtype=np.uint8), b"labels": [0, 1, 2, 3]},
        )
    _pickle(tmp_path / "test_batch", {b"data": rng.integers(0, 256, (3, 3072), dtype=np.uint8), b"labels": [4, 5, 6]})
    _pickle(tmp_path / "batches.meta", {b"label_names": [f"c{i}".encode() for i in range(10)]})
    split = load_cifar(tmp_path)
    assert split.train.X.shape == (8, 3, 32, 32) and split.test.y.tolist() == [4, 5, 6]
    assert split.train.class_names[3] == "c3"


def test_cifar100_coarse_keeps_fine_labels(tmp_path):
    rng = np.random.default_rng(0)
    for name, n in (("train", 6), ("test", 2)):
        _pickle(
            tmp_path / name,
            {
                b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
                b"fine_labels": list(range(n)),
                b"coarse_labels": [i // 2 for i in range(n)],
            },
        )
    split = load_cifar(tmp_path, coarse=True)
    assert split.train.y.tolist() == [0, 0, 1, 1, 2, 2]
    assert split.train.subclasses.tolist() == [0, 1, 2, 3, 4, 5]
    assert load_cifar(tmp_path).train.y.tolist() == [0, 1, 2, 3, 4, 5]


def test_cifar_corrupt_pickle(tmp_path):
    (tmp_path / "test_batch").write_bytes(b"not a pickle")
    (tmp_path / "data_batch_1").write_bytes(b"not a pickle")
    with pytest.raises(DataError, match="cannot read CIFAR"):
        load_cifar(tmp_path)


def test_npz_both_layouts(tmp_path):
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(20, 3)).astype(np.float32), np.arange(20) % 2
    np.savez(tmp_path / "xy.npz", X=X, y=y)
    split = load_npz(tmp_path / "xy.npz", test_fraction=0.2)
    assert len(split.train) == 16 and len(split.test) == 4
    np.savez(tmp_path / "tt.npz", X_train=X[:15], y_train=y[:15], X_test=X[15:], y_test=y[15:])
    assert torch.allclose(load_data(str(tmp_path / "tt.npz")).test.X, torch.tensor(X[15:]))
    np.savez(tmp_path / "wrong.npz", A=X)
    with pytest.raises(DataError, match="expected arrays"):
        load_npz(tmp_path / "wrong.npz")


def test_csv_classification_and_regression(tmp_path):
    path = tmp_path / "t.csv"
    rows = ["a,b,label,price"] + [f"{i},{i * 2},{'cat' if i % 2 else 'dog'},{i * 1.5}" for i in range(10)]
    path.write_text("\n".join(rows))
    split = load_csv(path, target="label", features=["a", "b"])
    assert split.train.class_names == ("cat", "dog") and split.train.X.shape[1] == 2
    reg = load_csv(path, target="price", features=["a", "b"], kind="regression", test_fraction=0.3)
    assert reg.train.kind == "regression" and len(reg.test) == 3
    assert torch.allclose(reg.train.y, reg.train.X[:, 0] * 1.5)
    with pytest.raises(DataError, match="numeric"):
        load_data(str(path), kind="regression", target="price")
    with pytest.raises(DataError, match="no target column"):
        load_csv(path, target="nope")


def test_dataset_validation():
    with pytest.raises(DataError, match="NaN"):
        Dataset(torch.tensor([[1.0], [float("nan")]]), torch.tensor([0, 1]))
    with pytest.raises(DataError, match="rows"):
        Dataset(torch.zeros(3, 2), torch.zeros(2))
    with pytest.raises(DataError, match="integers"):
        Dataset(torch.zeros(2, 2), torch.tensor([0.5, 1.0]))
    with pytest.raises(DataError, match="NaN"):
        Dataset(torch.zeros(2, 2), torch.tensor([1.0, float("nan")]), kind="regression")
    with pytest.raises(DataError, match="unknown data source"):
        load_data("no-such-data")


def test_group_classes_keeps_subclasses():
    d = load_digits().group_classes([[0, 1, 2, 3, 4], [5, 6, 7, 8, 9]], ["low", "high"])
    assert d.num_classes == 2 and torch.equal(d.y, (d.subclasses >= 5).long())
    with pytest.raises(DataError, match="exactly once"):
        load_digits().group_classes([[0, 1], [1, 2]])
