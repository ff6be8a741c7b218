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
from obliviate.data.memmap import NpyArray, NpzArray
from obliviate.data.sources import ImageFiles, ParquetColumns, RowSource
from obliviate.data.text import load_text_lang

__all__ = [
    "BUNDLED",
    "BUNDLED_SPLITS",
    "Batch",
    "DataError",
    "DataSplit",
    "Dataset",
    "ImageFiles",
    "NpyArray",
    "NpzArray",
    "ParquetColumns",
    "RowSource",
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
    stream: bool | None = None,
) -> DataSplit:
    """Resolve a data source: a bundled name, a directory (MNIST IDX files, CIFAR pickles or an
    image folder ``root/<class>/*.png``), an .npz file, or a CSV/Parquet table.

    ``target``, ``key`` and ``features`` name columns of a table (``target`` is required there).
    ``stream`` reads the inputs of an image folder, an ``.npz`` or a Parquet file per batch
    (``True``), into memory (``False``), or by the default rule (``None``: streamed when larger
    than ``OBLIVIATE_STREAM_MB``, see ``obliviate.data.sources``); other sources are read into
    memory, and ``stream=True`` on them is an error.
    The same source and seed always give the same split, and every row keeps its record key, so a
    request written against one run names the same rows in the next.
    """
    path = Path(source)
    suffix = path.suffix.lower()
    if (key or features) and not (path.is_file() and suffix in TABLE_SUFFIXES):
        raise DataError(f"{source}: --key and --features name columns of a CSV or Parquet table")
    in_memory_only = f"{source}: only image folders, .npz and Parquet files can be streamed"
    if source in BUNDLED:
        if stream:
            raise DataError(in_memory_only)
        return split_dataset(BUNDLED[source](), test_fraction, seed)
    if source in BUNDLED_SPLITS:
        if stream:
            raise DataError(in_memory_only)
        return BUNDLED_SPLITS[source](test_fraction, seed)
    if not path.exists():
        names = ", ".join(sorted([*BUNDLED, *BUNDLED_SPLITS]))
        raise DataError(f"unknown data source {source!r}: no such path, nor bundled ({names})")
    if path.is_dir():
        mnist = any(path.glob("train-images-idx3-ubyte*"))
        cifar = (path / "test_batch").is_file() or (path / "train").is_file()
        if stream and (mnist or cifar):
            raise DataError(in_memory_only)
        if mnist:
            return load_mnist_idx(path)
        if cifar:
            return load_cifar(path)
        return load_image_folder(path, test_fraction, seed, stream=stream)
    if suffix == ".npz":
        return load_npz(path, kind=kind, test_fraction=test_fraction, seed=seed, stream=stream)
    if suffix in TABLE_SUFFIXES:
        if target is None:
            raise DataError(f"{path}: a table needs --target naming the target column")
        return load_table(path, target, features=features, kind=kind, test_fraction=test_fraction, seed=seed, key=key,
                          stream=stream)  # fmt: skip
    raise DataError(f"{path}: unsupported file type {path.suffix!r} (use .npz, .csv, .parquet or a directory)")
