"""Loaders for users' own files: MNIST IDX, CIFAR pickles, .npz and CSV."""

from __future__ import annotations

import gzip
import pickle
import zipfile
from pathlib import Path

import numpy as np
import torch

from obliviate.data.dataset import DataError, Dataset, DataSplit, TaskKind, split_dataset
from obliviate.extras import need

_IDX_DTYPES = {
    0x08: np.uint8,
    0x09: np.int8,
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}


def _open(path: Path):
    return gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb")


def read_idx(path: str | Path) -> np.ndarray:
    """Read one IDX file (optionally gzipped): magic 0x0000, a dtype byte, a rank byte, dims."""
    path = Path(path)
    with _open(path) as fh:
        raw = fh.read()
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_DTYPES:
        raise DataError(f"{path}: not an IDX file (bad magic number)")
    rank = raw[3]
    header = 4 + 4 * rank
    if len(raw) < header:
        raise DataError(f"{path}: truncated IDX header")
    dims = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(rank))
    dtype = np.dtype(_IDX_DTYPES[raw[2]])
    expected = int(np.prod(dims)) * dtype.itemsize
    if len(raw) - header != expected:
        raise DataError(f"{path}: IDX body has {len(raw) - header} bytes, header says {expected}")
    return np.frombuffer(raw, dtype=dtype, offset=header).reshape(dims)


def _find(directory: Path, stem: str) -> Path:
    for candidate in (directory / stem, directory / f"{stem}.gz"):
        if candidate.exists():
            return candidate
    raise DataError(f"{directory}: missing {stem}[.gz]")


def load_mnist_idx(directory: str | Path, name: str = "mnist") -> DataSplit:
    """MNIST (or Fashion-MNIST) from the four standard IDX files in ``directory``."""
    directory = Path(directory)
    parts = {}
    for split, prefix in (("train", "train"), ("test", "t10k")):
        images = read_idx(_find(directory, f"{prefix}-images-idx3-ubyte"))
        labels = read_idx(_find(directory, f"{prefix}-labels-idx1-ubyte"))
        X = torch.tensor(images.astype(np.float32) / 255.0).unsqueeze(1)
        parts[split] = Dataset(X, torch.tensor(labels.astype(np.int64)), name=f"{name}-{split}")
    return DataSplit(**parts)


def _unpickle(path: Path) -> dict:
    try:
        with open(path, "rb") as fh:
            return pickle.load(fh, encoding="bytes")
    except (pickle.UnpicklingError, EOFError, OSError) as exc:
        raise DataError(f"{path}: cannot read CIFAR pickle ({exc})") from exc


def _cifar_images(batch: dict) -> torch.Tensor:
    data = np.asarray(batch[b"data"], dtype=np.float32) / 255.0
    return torch.tensor(data.reshape(-1, 3, 32, 32))


def load_cifar(directory: str | Path, coarse: bool = False) -> DataSplit:
    """CIFAR-10 (``data_batch_*``/``test_batch``) or CIFAR-100 (``train``/``test``) pickles.

    For CIFAR-100 with ``coarse=True`` the target is the 20 super-classes and the 100 fine
    labels are kept as sub-classes, the setting of sub-class forgetting.
    """
    directory = Path(directory)
    if (directory / "test_batch").exists():
        batches = sorted(directory.glob("data_batch_*"))
        if not batches:
            raise DataError(f"{directory}: no data_batch_* files")
        meta = directory / "batches.meta"
        names = tuple(n.decode() for n in _unpickle(meta)[b"label_names"]) if meta.exists() else None
        train = [_unpickle(p) for p in batches]
        test = _unpickle(directory / "test_batch")

        def build(parts: list[dict], split: str) -> Dataset:
            X = torch.cat([_cifar_images(b) for b in parts])
            y = torch.tensor(np.concatenate([b[b"labels"] for b in parts]))
            return Dataset(X, y, class_names=names, name=f"cifar10-{split}")

        return DataSplit(build(train, "train"), build([test], "test"))
    if (directory / "train").exists() and (directory / "test").exists():
        meta = directory / "meta"
        fine_names = coarse_names = None
        if meta.exists():
            m = _unpickle(meta)
            fine_names = tuple(n.decode() for n in m[b"fine_label_names"])
            coarse_names = tuple(n.decode() for n in m[b"coarse_label_names"])

        def build100(split: str) -> Dataset:
            b = _unpickle(directory / split)
            fine = torch.tensor(b[b"fine_labels"])
            if not coarse:
                return Dataset(_cifar_images(b), fine, class_names=fine_names, name=f"cifar100-{split}")
            return Dataset(
                _cifar_images(b),
                torch.tensor(b[b"coarse_labels"]),
                class_names=coarse_names,
                subclasses=fine,
                subclass_names=fine_names,
                name=f"cifar100-{split}",
            )

        return DataSplit(build100("train"), build100("test"))
    raise DataError(f"{directory}: neither CIFAR-10 nor CIFAR-100 python files found")


def load_npz(
    path: str | Path, kind: TaskKind = "classification", test_fraction: float = 0.2, seed: int = 0
) -> DataSplit:
    """Arrays ``X_train, y_train, X_test, y_test``, or ``X, y`` split here with ``seed``."""
    path = Path(path)
    try:
        arrays = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:  # a truncated file is not a zip
        raise DataError(f"{path}: cannot read .npz ({exc})") from exc
    keys = set(arrays.files)
    if {"X_train", "y_train", "X_test", "y_test"} <= keys:
        return DataSplit(
            Dataset(arrays["X_train"], arrays["y_train"], kind=kind, name=f"{path.stem}-train"),
            Dataset(arrays["X_test"], arrays["y_test"], kind=kind, name=f"{path.stem}-test"),
        )
    if {"X", "y"} <= keys:
        return split_dataset(Dataset(arrays["X"], arrays["y"], kind=kind, name=path.stem), test_fraction, seed)
    raise DataError(f"{path}: expected arrays X, y or X_train, y_train, X_test, y_test; found {sorted(keys)}")


def load_csv(
    path: str | Path,
    target: str,
    features: list[str] | None = None,
    kind: TaskKind = "classification",
    test_fraction: float = 0.2,
    seed: int = 0,
) -> DataSplit:
    """A CSV with a header: numeric feature columns and one target column.

    Classification targets may be strings; they become class ids in sorted order.
    """
    pd = need("pandas", "data")

    path = Path(path)
    try:
        frame = pd.read_csv(path)
    except (OSError, ValueError) as exc:
        raise DataError(f"{path}: cannot read CSV ({exc})") from exc
    if target not in frame.columns:
        raise DataError(f"{path}: no target column {target!r}; columns are {list(frame.columns)}")
    features = features or [c for c in frame.columns if c != target]
    missing = [c for c in features if c not in frame.columns]
    if missing:
        raise DataError(f"{path}: missing feature columns {missing}")
    try:
        X = frame[features].to_numpy(dtype=np.float32)
    except ValueError as exc:
        raise DataError(f"{path}: feature columns must be numeric ({exc})") from exc
    class_names = None
    if kind == "classification":
        codes, uniques = pd.factorize(frame[target], sort=True)
        if (codes < 0).any():
            raise DataError(f"{path}: target column {target!r} has missing values")
        y, class_names = codes, tuple(str(u) for u in uniques)
    else:
        y = pd.to_numeric(frame[target], errors="coerce").to_numpy(dtype=np.float32)
    data = Dataset(X, y, kind=kind, class_names=class_names, name=path.stem, meta={"features": features})
    return split_dataset(data, test_fraction, seed)
