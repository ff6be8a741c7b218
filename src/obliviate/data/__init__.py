"""Data: in-memory tensors, bundled data sets and loaders for users' files."""

from __future__ import annotations

from pathlib import Path

from obliviate.data.bundled import BUNDLED, load_diabetes, load_digits, load_mnist5k
from obliviate.data.dataset import DataError, Dataset, DataSplit, TaskKind, split_dataset
from obliviate.data.files import load_cifar, load_csv, load_mnist_idx, load_npz, read_idx

__all__ = [
    "BUNDLED",
    "DataError",
    "DataSplit",
    "Dataset",
    "TaskKind",
    "load_cifar",
    "load_csv",
    "load_data",
    "load_diabetes",
    "load_digits",
    "load_mnist5k",
    "load_mnist_idx",
    "load_npz",
    "read_idx",
    "split_dataset",
]


def load_data(
    source: str,
    *,
    kind: TaskKind = "classification",
    target: str | None = None,
    test_fraction: float = 0.2,
    seed: int = 0,
) -> DataSplit:
    """Resolve a data source: a bundled name, a directory (IDX or CIFAR files), .npz or .csv.

    The same source and seed always give the same split, so forget indices written against
    one run refer to the same rows in the next.
    """
    if source in BUNDLED:
        return split_dataset(BUNDLED[source](), test_fraction, seed)
    path = Path(source)
    if not path.exists():
        raise DataError(f"unknown data source {source!r}: no such path, nor bundled ({', '.join(sorted(BUNDLED))})")
    if path.is_dir():
        if any(path.glob("train-images-idx3-ubyte*")):
            return load_mnist_idx(path)
        return load_cifar(path)
    if path.suffix == ".npz":
        return load_npz(path, kind=kind, test_fraction=test_fraction, seed=seed)
    if path.suffix == ".csv":
        if target is None:
            raise DataError(f"{path}: a CSV needs --target naming the target column")
        return load_csv(path, target, kind=kind, test_fraction=test_fraction, seed=seed)
    raise DataError(f"{path}: unsupported file type {path.suffix!r} (use .npz, .csv or a directory)")
