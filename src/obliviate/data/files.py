"""Loaders for users' own files: MNIST IDX, CIFAR pickles, image folders, .npz, CSV and Parquet.

Every loader gives each row a record key: a key column or array when the file has one, the
image's path for image folders, else the row number in the file (never a position in the
shuffled split), so forget requests name the same rows in every later run.

Image folders, ``.npz`` files and Parquet tables can also stay on disk and be read per batch
(``stream=``; see ``obliviate.data.sources`` for the sources and the default rule). CSV files,
MNIST and CIFAR files are always read into memory.
"""

from __future__ import annotations

import gzip
import pickle
import zipfile
from pathlib import Path

import numpy as np
import torch

from obliviate.data.dataset import DataError, Dataset, DataSplit, TaskKind, split_dataset
from obliviate.data.memmap import NpzArray, npz_member
from obliviate.data.sources import ImageFiles, ParquetColumns, image_header, read_image, stream_by_default
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


def _npz_array(arrays, path: Path, name: str) -> np.ndarray:
    try:
        return arrays[name]
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        raise DataError(f"{path}: cannot read array {name!r} ({exc})") from None


def _inputs(arrays, path: Path, name: str, stream: bool | None) -> np.ndarray | NpzArray:
    """Numeric inputs; ``(N, H, W)`` images get a channel axis, ``(N, 1, H, W)``. Pixels keep their dtype.

    Streamed (an ``NpzArray``) when ``stream`` says so, or by default when the array is larger
    than the streaming limit and stored uncompressed; a compressed array is read into memory
    unless streaming was asked for, which it cannot be."""
    shape, dtype, _, offset = npz_member(path, name)
    if dtype.kind not in "biuf":
        raise DataError(f"{path}: {name} has dtype {dtype}; inputs must be numbers")
    row_shape = (1, *shape[1:]) if len(shape) == 3 else None
    nbytes = int(np.prod(shape)) * dtype.itemsize
    if stream or (stream is None and offset is not None and stream_by_default(nbytes)):
        return NpzArray(path, name, row_shape)
    X = _npz_array(arrays, path, name)
    return X[:, None] if X.ndim == 3 else X


def load_npz(
    path: str | Path,
    kind: TaskKind = "classification",
    test_fraction: float = 0.2,
    seed: int = 0,
    stream: bool | None = None,
) -> DataSplit:
    """Arrays ``X_train, y_train, X_test, y_test``, or ``X, y`` split here with ``seed``.

    Optional arrays: ``keys`` (one record key per row of ``X``; ``keys_train`` and ``keys_test``
    in the split layout) and ``class_names``. A 3-D ``X`` is read as ``(N, H, W)`` grayscale
    images and gets a channel axis. ``stream``: read the inputs per batch from the file
    (``NpzArray``; uncompressed arrays only, as ``np.savez`` writes them), or ``None`` for the
    default rule (``obliviate.data.sources.stream_by_default``; compressed arrays are then read
    into memory).
    """
    path = Path(path)
    try:
        arrays = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        raise DataError(f"{path}: cannot read .npz ({exc})") from None
    with arrays:
        files = set(arrays.files)

        def get(name: str) -> np.ndarray | None:
            return _npz_array(arrays, path, name) if name in files else None

        names = get("class_names")
        if names is not None:
            if names.ndim != 1 or names.dtype.kind != "U":
                raise DataError(f"{path}: class_names must be a 1-D array of strings, got {names.dtype} {names.shape}")
            names = tuple(names.tolist())

        def build(x: str, y: str, keys: str, name: str) -> Dataset:
            X, labels = _inputs(arrays, path, x, stream), get(y)
            if labels.dtype.kind not in "biuf":
                raise DataError(f"{path}: {y} has dtype {labels.dtype}; store class ids (and class_names) or numbers")
            return Dataset(X, labels, kind=kind, class_names=names, name=name, keys=get(keys))

        if {"X_train", "y_train", "X_test", "y_test"} <= files:
            train = build("X_train", "y_train", "keys_train", f"{path.stem}-train")
            return DataSplit(train, build("X_test", "y_test", "keys_test", f"{path.stem}-test"))
        if {"X", "y"} <= files:
            return split_dataset(build("X", "y", "keys", path.stem), test_fraction, seed)
    raise DataError(f"{path}: expected arrays X, y or X_train, y_train, X_test, y_test; found {sorted(files)}")


IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")


def _class_folders(root: Path) -> list[Path]:
    return sorted(d for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))


def _image_dataset(root: Path, folder: Path, classes: list[str], name: str, stream: bool | None) -> Dataset:
    files, labels = [], []
    for sub in _class_folders(folder):
        if sub.name not in classes:
            raise DataError(f"{sub}: class {sub.name!r} is not among the training classes {classes}")
        found = sorted(f for f in sub.iterdir() if f.suffix.lower() in IMAGE_SUFFIXES)
        files += found
        labels += [classes.index(sub.name)] * len(found)
    if not files:
        raise DataError(f"{folder}: no .png or .jpg images in class folders ({folder}/<class>/*.png)")
    first = image_header(files[0])
    if stream is None:
        stream = stream_by_default(len(files) * int(np.prod(first)))
    if stream:  # every header is checked now (cheap), the pixels are decoded per batch
        for f in files:
            _same_size(f, image_header(f), files[0], first)
        X = ImageFiles(files, first)
    else:
        images = [read_image(f) for f in files]
        for f, pixels in zip(files, images, strict=True):
            _same_size(f, pixels.shape, files[0], first)
        X = np.stack(images)
    keys = [f.relative_to(root).as_posix() for f in files]
    return Dataset(X, np.asarray(labels), class_names=tuple(classes), name=name, keys=keys)


def _same_size(path: Path, shape: tuple, first: Path, first_shape: tuple) -> None:
    if tuple(shape) != tuple(first_shape):
        raise DataError(
            f"{path}: image is {_shape(shape)} but {first.name} is {_shape(first_shape)}; "
            "all images must have one size and colour mode"
        )


def _shape(shape: tuple) -> str:
    channels, height, width = shape
    return f"{width}x{height} {'grayscale' if channels == 1 else 'RGB'}"


def load_image_folder(
    root: str | Path, test_fraction: float = 0.2, seed: int = 0, stream: bool | None = None
) -> DataSplit:
    """Images in ``root/<class>/*.png|jpg`` (or ``root/train/<class>/`` and ``root/test/<class>/``).

    Classes are the folder names in sorted order; grayscale images give ``(N, 1, H, W)``, colour
    ones ``(N, 3, H, W)``, uint8 pixels as stored; all images must share one size. A row's key is
    its path under ``root`` (``cat/001.png``). Without train/test folders the split is seeded.
    ``stream``: decode images per batch (``ImageFiles``) instead of all up front; ``None`` streams
    when the decoded pixels would exceed the streaming limit (``stream_by_default``).
    """
    root = Path(root)
    if (root / "train").is_dir() and (root / "test").is_dir():
        classes = [d.name for d in _class_folders(root / "train")]
        train = _image_dataset(root, root / "train", classes, f"{root.name}-train", stream)
        return DataSplit(train, _image_dataset(root, root / "test", classes, f"{root.name}-test", stream))
    classes = [d.name for d in _class_folders(root)]
    return split_dataset(_image_dataset(root, root, classes, root.name, stream), test_fraction, seed)


def _arrow(path: Path, read, *args, **kwargs):
    """``read(*args, **kwargs)`` with pyarrow's errors as one-line ``DataError``s."""
    pa = need("pyarrow", "files")
    try:
        return read(*args, **kwargs)
    except (pa.ArrowException, OSError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DataError(f"{path}: cannot read {path.suffix.lstrip('.')} table ({first})") from None


def _column(table, path: Path, name: str, role: str) -> np.ndarray:
    column = table.column(name)
    if column.null_count:
        raise DataError(f"{path}: {role} column {name!r} has {column.null_count} missing values")
    return column.to_numpy()


def _check_numeric(schema, path: Path, name: str) -> None:
    pa = need("pyarrow", "files")

    kind = schema.field(name).type
    if not (pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_boolean(kind)):
        raise DataError(
            f"{path}: feature column {name!r} is not numeric ({kind}); choose numeric columns with --features "
            "or name an id column with --key"
        )


def _check_parquet_nulls(parquet, path: Path, features: list[str]) -> None:
    """Missing feature values, from the row groups' statistics (streamed files are not read here;
    a file written without statistics is checked as each row group is read)."""
    meta = parquet.metadata
    for g in range(meta.num_row_groups):
        group = meta.row_group(g)
        for i in range(group.num_columns):
            column = group.column(i)
            stats = column.statistics
            if column.path_in_schema in features and stats is not None and stats.has_null_count and stats.null_count:
                name, nulls = column.path_in_schema, stats.null_count
                raise DataError(f"{path}: feature column {name!r} has {nulls} missing values (row group {g})")


def _class_labels(values: np.ndarray, path: Path, target: str) -> tuple[np.ndarray, tuple[str, ...]]:
    """Class ids in sorted order of the target's values (names or numbers), and their names."""
    if values.dtype.kind == "f":
        if not np.all(values == np.round(values)):
            raise DataError(f"{path}: target {target!r} has fractional values; use --kind regression")
        values = values.astype(np.int64)
    if values.dtype.kind not in "biuUO":
        raise DataError(f"{path}: target column {target!r} has dtype {values.dtype}")
    if values.dtype.kind == "O":
        values = values.astype(str)
    uniques, codes = np.unique(values, return_inverse=True)
    return codes, tuple(str(u) for u in uniques.tolist())


def load_table(
    path: str | Path,
    target: str,
    features: list[str] | None = None,
    kind: TaskKind = "classification",
    test_fraction: float = 0.2,
    seed: int = 0,
    key: str | None = None,
    stream: bool | None = None,
) -> DataSplit:
    """A CSV (with a header) or Parquet table: numeric feature columns, a target column, and an
    optional key column (a user id; rows sharing a key are one person's rows).

    ``features`` defaults to every column except the target and the key; the key is never a
    feature. Classification targets (names or integers) become class ids in sorted order of their
    values, kept as class names. Without a key column, a row's key is its row number in the file.

    ``stream``: read a Parquet file's features per batch, by row groups (``ParquetColumns``);
    targets and keys are always read into memory. ``None`` streams a Parquet file whose features
    would exceed the streaming limit (``stream_by_default``); a CSV file cannot be streamed.
    """
    path = Path(path)
    csv = path.suffix.lower() == ".csv"
    if csv:
        table = _arrow(path, need("pyarrow.csv", "files").read_csv, path)
        schema, rows = table.schema, table.num_rows
    else:
        parquet = _arrow(path, need("pyarrow.parquet", "files").ParquetFile, path)
        schema, rows = parquet.schema_arrow, parquet.metadata.num_rows
    columns = schema.names
    for role, name in (("target", target), ("key", key)):
        if name is not None and name not in columns:
            raise DataError(f"{path}: no {role} column {name!r}; columns are {columns}")
    if features:
        missing = [c for c in features if c not in columns]
        if missing:
            raise DataError(f"{path}: no feature columns {missing}; columns are {columns}")
        if key in features or target in features:
            raise DataError(f"{path}: --features lists the {'key' if key in features else 'target'} column")
    else:
        features = [c for c in columns if c not in (target, key)]
        if not features:
            raise DataError(f"{path}: no feature columns besides the target and key")
    for c in features:
        _check_numeric(schema, path, c)
    labels = [target] + ([key] if key else [])
    if stream is None:
        stream = not csv and stream_by_default(rows * len(features) * 4)
    if stream:
        if csv:
            raise DataError(f"{path}: a CSV file cannot be streamed; convert it to Parquet to read it per batch")
        _check_parquet_nulls(parquet, path, features)
        X = ParquetColumns(path, features)
        table = _arrow(path, parquet.read, columns=labels)
    else:
        if not csv:
            table = _arrow(path, parquet.read, columns=features + labels)
        X = np.stack([_column(table, path, c, "feature").astype(np.float32) for c in features], axis=1)
    values = _column(table, path, target, "target")
    class_names = None
    if kind == "classification":
        y, class_names = _class_labels(values, path, target)
    elif values.dtype.kind in "biuf":
        y = values.astype(np.float32)
    else:
        raise DataError(f"{path}: regression target {target!r} is not numeric ({values.dtype})")
    keys = _column(table, path, key, "key") if key else None
    if keys is not None and keys.dtype.kind not in "iu":
        keys = keys.astype(str)
    data = Dataset(
        X, y, kind=kind, class_names=class_names, name=path.stem, meta={"features": features, "key": key}, keys=keys
    )
    return split_dataset(data, test_fraction, seed)


load_csv = load_table  # the CSV-only name of earlier releases; CSV and Parquet share one loader
