"""Inputs that stay in their files and are read per batch: the streaming sources.

A ``RowSource`` is what a ``Dataset`` holds instead of a tensor when its inputs are too large for
memory. Each one knows its shape and dtype without reading the data, and ``take(rows)`` reads
only the rows a batch asks for:

- ``NpyArray`` / ``NpzArray`` (``obliviate.data.memmap``): rows of a ``.npy`` file, or of an
  uncompressed member of an ``.npz``, read with positioned reads;
- ``ParquetColumns``: numeric columns of a Parquet file, read one row group at a time with a
  small cache of the last row groups read;
- ``ImageFiles``: image files decoded when a batch asks for them.

Sources that read in blocks (Parquet row groups) tell the loader through ``blocks``; a shuffled
pass then visits a few blocks at a time (see ``obliviate.data.loader``), so each block is read
once per epoch instead of once per batch.

The loaders of ``obliviate.data.files`` choose streaming with ``stream=``: ``True`` streams,
``False`` reads into memory, ``None`` (the default) streams when the inputs would take more than
``OBLIVIATE_STREAM_MB`` megabytes (default 512) in memory.
"""

from __future__ import annotations

import hashlib
import os
from collections import OrderedDict
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

STREAM_MB = 512
"""Inputs larger than this (in memory, as loaded) are streamed when a loader is given ``stream=None``."""


class DataError(ValueError):
    """Raised for data that cannot be used as given (NaNs, shape or label mismatches, bad files)."""


def stream_by_default(nbytes: int) -> bool:
    """The rule for ``stream=None``: stream inputs that would take more than ``OBLIVIATE_STREAM_MB``
    megabytes (default ``STREAM_MB``) in memory."""
    limit = os.environ.get("OBLIVIATE_STREAM_MB", "")
    try:
        megabytes = float(limit) if limit else STREAM_MB
    except ValueError:
        raise DataError(f"OBLIVIATE_STREAM_MB must be a number of megabytes, got {limit!r}") from None
    return nbytes > megabytes * 2**20


class RowSource:
    """Rows of inputs kept in a file; subclasses set ``shape`` and ``dtype`` and read rows in ``take``.

    A source survives pickling (a loader worker re-opens its file)."""

    shape: tuple[int, ...]
    dtype: torch.dtype
    in_blocks: bool = False
    """True for a source read in blocks (see ``blocks``)."""
    window: int = 1
    """Blocks a shuffled pass may interleave at once (see ``blocks``)."""

    def __len__(self) -> int:
        return self.shape[0]

    def describe(self) -> str:
        """What the data are, for fingerprints: the file, its size and the layout."""
        raise NotImplementedError

    def take(self, rows: np.ndarray) -> Tensor:
        """Rows ``rows`` (storage positions) as one tensor, in that order."""
        raise NotImplementedError

    def blocks(self, rows: np.ndarray) -> np.ndarray:
        """The block each row is read with (sources with ``in_blocks``)."""
        raise NotImplementedError

    def __getitem__(self, i: int) -> Tensor:
        return self.take(np.array([i]))[0]

    def _check_rows(self, rows: np.ndarray) -> np.ndarray:
        rows = np.asarray(rows, dtype=np.int64)
        if len(rows) and (rows.min() < 0 or rows.max() >= len(self)):
            raise IndexError(f"rows out of range 0..{len(self) - 1}")
        return rows


def _file_id(path: Path) -> str:
    stat = path.stat() if path.exists() else None
    return f"{path.resolve()}:{stat.st_size if stat else '?'}"


class ParquetColumns(RowSource):
    """Numeric columns of a Parquet file as ``float32`` rows, read by row groups.

    ``take`` reads each row group it needs once per call, and keeps the last ``window`` row groups
    read (least recently used goes first); memory is about ``window`` row groups, so write large
    files with row groups of 10k-100k rows (``pyarrow.parquet.write_table(..., row_group_size=)``).
    """

    in_blocks = True

    def __init__(self, path: str | os.PathLike, columns: list[str], window: int = 2):
        self.path, self.columns, self.window = Path(path), list(columns), window
        self._open()

    def _open(self) -> None:
        import pyarrow.parquet as pq

        self._file = pq.ParquetFile(self.path)
        meta = self._file.metadata
        sizes = [meta.row_group(g).num_rows for g in range(meta.num_row_groups)]
        self._starts = np.concatenate([[0], np.cumsum(sizes, dtype=np.int64)])
        self.shape = (int(meta.num_rows), len(self.columns))
        self.dtype = torch.float32
        self._cache: OrderedDict[int, np.ndarray] = OrderedDict()
        self.reads = 0  # row groups read from the file (for tests and benchmarks)

    def __getstate__(self) -> dict:
        return {"path": self.path, "columns": self.columns, "window": self.window}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._open()

    def describe(self) -> str:
        return f"parquet:{_file_id(self.path)}:{self.columns}"

    def blocks(self, rows: np.ndarray) -> np.ndarray:
        return np.searchsorted(self._starts, np.asarray(rows), side="right") - 1

    def _group(self, g: int) -> np.ndarray:
        if g in self._cache:
            self._cache.move_to_end(g)
            return self._cache[g]
        table = self._file.read_row_group(g, columns=self.columns)
        self.reads += 1
        for name in self.columns:
            nulls = table.column(name).null_count
            if nulls:
                raise DataError(f"{self.path}: feature column {name!r} has {nulls} missing values (row group {g})")
        values = np.stack([table.column(c).to_numpy().astype(np.float32) for c in self.columns], axis=1)
        self._cache[g] = values
        while len(self._cache) > self.window:
            self._cache.popitem(last=False)
        return values

    def take(self, rows: np.ndarray) -> Tensor:
        rows = self._check_rows(rows)
        groups = self.blocks(rows)
        out = np.empty((len(rows), len(self.columns)), dtype=np.float32)
        wanted, first = np.unique(groups, return_index=True)
        # cached groups first, so reading the others cannot evict one this batch still needs; then
        # the others in the order the rows ask for them (the loader's order: the last read stay cached)
        wanted = wanted[np.argsort(first)].tolist()
        for g in sorted(wanted, key=lambda g: g not in self._cache):
            hit = groups == g
            out[hit] = self._group(g)[rows[hit] - self._starts[g]]
        return torch.from_numpy(out)


def image_shape(mode: str, size: tuple[int, int], path: Path) -> tuple[int, int, int]:
    """``(C, H, W)`` an image of this mode and size is read as: grayscale one channel, else RGB."""
    if mode in ("I", "I;16", "I;16B", "F"):
        raise DataError(f"{path}: {mode} images (16-bit or float) are not supported; save 8-bit images")
    width, height = size
    return (1 if mode in ("1", "L", "LA") else 3, height, width)


def _with_image(path: Path, read):
    """``read(image)`` on the image file opened with Pillow; unreadable files are one-line errors."""
    from obliviate.extras import need

    Image = need("PIL.Image", "files")
    try:
        with Image.open(path) as image:
            return read(image)
    except (OSError, Image.UnidentifiedImageError) as exc:
        raise DataError(f"{path}: cannot read image ({exc})") from None


def read_image(path: Path) -> np.ndarray:
    """One image as ``(C, H, W)`` uint8: grayscale stays one channel, everything else becomes RGB."""

    def pixels(image) -> np.ndarray:
        gray = image_shape(image.mode, image.size, path)[0] == 1
        values = np.asarray(image.convert("L" if gray else "RGB"))
        return values[None] if gray else values.transpose(2, 0, 1)

    return _with_image(path, pixels)


def image_header(path: Path) -> tuple[int, int, int]:
    """The ``(C, H, W)`` of an image file from its header, without decoding the pixels."""
    return _with_image(path, lambda image: image_shape(image.mode, image.size, path))


class ImageFiles(RowSource):
    """Image files of one size and colour mode, decoded (Pillow) only when a batch asks for them,
    as ``(C, H, W)`` uint8 rows."""

    def __init__(self, files: list[Path], shape: tuple[int, int, int]):
        self.files = [Path(f) for f in files]
        self.shape = (len(self.files), *shape)
        self.dtype = torch.uint8

    def describe(self) -> str:
        h = hashlib.sha256()
        for f in self.files:
            h.update(f"{_file_id(f)}\n".encode())
        return f"images:{len(self.files)}:{self.shape[1:]}:{h.hexdigest()}"

    def take(self, rows: np.ndarray) -> Tensor:
        rows = self._check_rows(rows)
        out = np.empty((len(rows), *self.shape[1:]), dtype=np.uint8)
        for i, row in enumerate(rows.tolist()):
            pixels = read_image(self.files[row])
            if pixels.shape != out.shape[1:]:
                raise DataError(
                    f"{self.files[row]}: image is {tuple(pixels.shape)} (C, H, W) but the folder's images are "
                    f"{self.shape[1:]}; all images must have one size and colour mode"
                )
            out[i] = pixels
        return torch.from_numpy(out)
