"""Data: data sets (in-memory, memory-mapped or any torch data set), the batch loader, bundled
data sets and loaders for users' files."""

from __future__ import annotations

from pathlib import Path

from obliviate.data.bundled import BUNDLED, BUNDLED_SPLITS, load_diabetes, load_digits, load_mnist5k
from obliviate.data.dataset import DataError, Dataset, DataSplit, TaskKind, concat, split_dataset
from obliviate.data.files import (
    load_cifar,
    load_csv,
    load_image_folder,
    load_mnist_idx,
    load_npz,
    load_table,
    read_idx,
)
from obliviate.data.loader import Batch, iterate, model_input, take
from obliviate.data.memmap import NpyArray
from obliviate.data.text import load_text_lang

__all__ = [
    "BUNDLED",
    "BUNDLED_SPLITS",
    "Batch",
    "DataError",
    "DataSplit",
    "Dataset",
    "NpyArray",
    "TaskKind",
    "concat",
    "iterate",
    "load_cifar",
    "load_csv",
    "load_data",
    "load_diabetes",
    "load_digits",
    "load_image_folder",
    "load_mnist5k",
    "load_mnist_idx",
    "load_npz",
    "load_table",
    "load_text_lang",
    "model_input",
    "read_idx",
    "split_dataset",
    "take",
]


TABLE_SUFFIXES = (".csv", ".parquet", ".pq")


def load_data(
    source: str,
    *,
    kind: TaskKind = "classification",
    target: str | None = None,
    key: str | None = None,
    features: list[str] | None = None,
    test_fraction: float = 0.2,
    seed: int = 0,
) -> DataSplit:
    """Resolve a data source: a bundled name, a directory (MNIST IDX files, CIFAR pickles or an
    image folder ``root/<class>/*.png``), an .npz file, or a CSV/Parquet table.

    ``target``, ``key`` and ``features`` name columns of a table (``target`` is required there).
    The same source and seed always give the same split, and every row keeps its record key, so a
    request written against one run names the same rows in the next.
    """
    path = Path(source)
    suffix = path.suffix.lower()
    if (key or features) and not (path.is_file() and suffix in TABLE_SUFFIXES):
        raise DataError(f"{source}: --key and --features name columns of a CSV or Parquet table")
    if source in BUNDLED:
        return split_dataset(BUNDLED[source](), test_fraction, seed)
    if source in BUNDLED_SPLITS:
        return BUNDLED_SPLITS[source](test_fraction, seed)
    if not path.exists():
        names = ", ".join(sorted([*BUNDLED, *BUNDLED_SPLITS]))
        raise DataError(f"unknown data source {source!r}: no such path, nor bundled ({names})")
    if path.is_dir():
        if any(path.glob("train-images-idx3-ubyte*")):
            return load_mnist_idx(path)
        if (path / "test_batch").is_file() or (path / "train").is_file():
            return load_cifar(path)
        return load_image_folder(path, test_fraction, seed)
    if suffix == ".npz":
        return load_npz(path, kind=kind, test_fraction=test_fraction, seed=seed)
    if suffix in TABLE_SUFFIXES:
        if target is None:
            raise DataError(f"{path}: a table needs --target naming the target column")
        return load_table(path, target, features=features, kind=kind, test_fraction=test_fraction, seed=seed, key=key)
    raise DataError(f"{path}: unsupported file type {path.suffix!r} (use .npz, .csv, .parquet or a directory)")
