"""Inputs read from a memory-mapped ``.npy`` file, so data larger than memory streams.

``NpyArray("x.npy")`` maps the file (``np.load(mmap_mode="r")``) and copies out only the rows
a batch asks for. Pages of a file mapping count towards a process's resident memory while
they stay mapped, so after every ``release_every`` bytes read the mapping is told to drop
its pages (``madvise(MADV_DONTNEED)``; they stay in the operating system's file cache),
counting the 64 KB the kernel maps around every faulting row:
reading a 10 GB file then costs a few batches of memory, not 10 GB.
"""

from __future__ import annotations

import mmap
import os
from pathlib import Path

import numpy as np
import torch
from torch import Tensor


class NpyArray:
    """Rows of a ``.npy`` array (rows first), memory-mapped and gathered per batch.

    Use it as the inputs of a ``Dataset``: ``Dataset(NpyArray("x.npy"), y)``. It survives
    pickling (a loader worker re-opens the file).
    """

    def __init__(self, path: str | os.PathLike, release_every: int = 64 << 20):
        self.path = Path(path)
        self.release_every = release_every
        self._open()

    @classmethod
    def wrap(cls, array: np.memmap) -> NpyArray:
        """An ``NpyArray`` over an already mapped array (``np.load(..., mmap_mode="r")``)."""
        new = cls.__new__(cls)
        new.path = Path(array.filename) if array.filename else Path("<memmap>")
        new.release_every = 64 << 20
        new.array, new._read = array, 0
        return new

    def _open(self) -> None:
        self.array = np.load(self.path, mmap_mode="r")
        self._read = 0
        if self.array.ndim < 2:
            raise ValueError(f"{self.path}: inputs need a row dimension and features, got shape {self.array.shape}")

    def __getstate__(self) -> dict:
        return {"path": self.path, "release_every": self.release_every}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._open()

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
        """Rows ``rows`` (storage positions) as a tensor in that order; read in file order."""
        rows = np.asarray(rows, dtype=np.int64)
        if len(rows) < 2 or bool((rows[1:] >= rows[:-1]).all()):
            out = np.asarray(self.array[rows])
        else:
            order = np.argsort(rows, kind="stable")
            block = np.asarray(self.array[rows[order]])
            out = np.empty_like(block)
            out[order] = block
        # A page fault maps up to 64 KB around the row ("fault-around"), so count that much per row.
        self._read += len(rows) * (out[0].nbytes + 65536) if len(rows) else 0
        if self._read >= self.release_every:
            self.release()
        values = torch.from_numpy(out)
        return values.float() if values.dtype == torch.float64 else values

    def __getitem__(self, i: int) -> Tensor:
        return self.take(np.array([i]))[0]

    def release(self) -> None:
        """Drop this process's mapped pages (the file cache keeps them)."""
        self._read = 0
        handle = getattr(self.array, "_mmap", None)
        if handle is not None and hasattr(mmap, "MADV_DONTNEED"):
            handle.madvise(mmap.MADV_DONTNEED)
