"""Inputs read from a ``.npy`` file row by row, so data larger than memory streams.

``NpyArray("x.npy")`` opens the file with ``np.load(mmap_mode="r")`` (shape, dtype and the
data's offset, without reading it) and gathers the rows a batch asks for with positioned reads
(``os.preadv``) straight into the batch's buffer. Reading through the mapping itself would be
simpler, but every row touched maps at least a page-cache folio (up to 2 MB for a file in large
folios) into the process, so resident memory would grow with the file, not with the batch;
positioned reads cost one system call per run of consecutive rows and keep memory at a batch.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
from torch import Tensor


class NpyArray:
    """Rows of a ``.npy`` array (rows first, C order), read per batch.

    Use it as the inputs of a ``Dataset``: ``Dataset(NpyArray("x.npy"), y)``. It survives
    pickling (a loader worker re-opens the file).
    """

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self._open()

    @classmethod
    def wrap(cls, array: np.memmap) -> NpyArray:
        """An ``NpyArray`` over the file of an array opened with ``np.load(..., mmap_mode="r")``."""
        if not array.filename:
            raise ValueError("the memory-mapped array has no file name")
        return cls(array.filename)

    def _open(self) -> None:
        self.array = np.load(self.path, mmap_mode="r")
        if self.array.ndim < 2:
            raise ValueError(f"{self.path}: inputs need a row dimension and features, got shape {self.array.shape}")
        if not self.array.flags.c_contiguous:
            raise ValueError(f"{self.path}: rows must be stored in C order (got a Fortran-order array)")
        self._row_bytes = int(np.prod(self.array.shape[1:])) * self.array.dtype.itemsize
        self._fd = os.open(self.path, os.O_RDONLY)

    def __getstate__(self) -> dict:
        return {"path": self.path}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._open()

    def __del__(self) -> None:
        fd = self.__dict__.get("_fd")
        if fd is not None:
            os.close(fd)

    def __len__(self) -> int:
        return len(self.array)

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.array.shape)

    @property
    def dtype(self) -> torch.dtype:
        return torch.from_numpy(np.zeros(0, dtype=self.array.dtype)).dtype

    def describe(self) -> str:
        stat = self.path.stat() if self.path.exists() else None
        return f"npy:{self.path.resolve()}:{stat.st_size if stat else '?'}:{self.array.shape}:{self.array.dtype}"

    def take(self, rows: np.ndarray) -> Tensor:
        """Rows ``rows`` (storage positions) as a tensor in that order, read in file order."""
        rows = np.asarray(rows, dtype=np.int64)
        if len(rows) and (rows.min() < 0 or rows.max() >= len(self)):
            raise IndexError(f"rows out of range 0..{len(self) - 1}")
        order = np.argsort(rows, kind="stable")
        ordered = rows[order]
        out = np.empty((len(rows), *self.array.shape[1:]), dtype=self.array.dtype)
        buf, size, base = memoryview(out.reshape(-1).view(np.uint8)), self._row_bytes, self.array.offset
        start = 0
        for end in range(1, len(ordered) + 1):  # one read per run of consecutive rows
            if end == len(ordered) or ordered[end] != ordered[end - 1] + 1:
                os.preadv(self._fd, [buf[start * size : end * size]], base + int(ordered[start]) * size)
                start = end
        if not bool((order == np.arange(len(order))).all()):
            out[order] = out.copy()
        values = torch.from_numpy(out)
        return values.float() if values.dtype == torch.float64 else values

    def __getitem__(self, i: int) -> Tensor:
        return self.take(np.array([i]))[0]
