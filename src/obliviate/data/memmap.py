"""Inputs read from a ``.npy`` file, or an uncompressed member of an ``.npz``, row by row, so data
larger than memory streams.

``NpyArray("x.npy")`` reads the file's header (shape, dtype, where the data start) and gathers
the rows a batch asks for with positioned reads (``os.preadv``) straight into the batch's
buffer. Reading through a memory mapping would be simpler, but every row touched maps at least
a page-cache folio (up to 2 MB for a file in large folios) into the process, so resident memory
would grow with the file, not with the batch; positioned reads cost one system call per run of
consecutive rows and keep memory at a batch.

An ``.npz`` is a zip archive of ``.npy`` files. ``np.savez`` stores them uncompressed, so an
array's bytes lie at a fixed offset of the archive and ``NpzArray("d.npz", "X")`` reads them
exactly like a ``.npy``. Members written by ``np.savez_compressed`` cannot be read by offset:
``NpzArray`` refuses them (the loaders then read such an array into memory, see
``obliviate.data.files.load_npz``).
"""

from __future__ import annotations

import os
import struct
import zipfile
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from obliviate.data.sources import DataError, RowSource, _file_id


def _npy_header(fh) -> tuple[tuple[int, ...], np.dtype, bool]:
    """Shape, dtype and Fortran order from an open ``.npy`` stream positioned at its magic string."""
    version = np.lib.format.read_magic(fh)
    read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
    shape, fortran, dtype = read(fh)
    return tuple(shape), np.dtype(dtype), fortran


class NpyArray(RowSource):
    """Rows of a ``.npy`` array (rows first, C order), read per batch.

    Use it as the inputs of a ``Dataset``: ``Dataset(NpyArray("x.npy"), y)``. ``row_shape``
    reads each row with another shape of the same size (``(H, W)`` images as ``(1, H, W)``).
    """

    def __init__(self, path: str | os.PathLike, row_shape: tuple[int, ...] | None = None):
        self.path = Path(path)
        self.row_shape = tuple(row_shape) if row_shape is not None else None
        self._open()

    @classmethod
    def wrap(cls, array: np.memmap) -> NpyArray:
        """An ``NpyArray`` over the file of an array opened with ``np.load(..., mmap_mode="r")``."""
        if not array.filename:
            raise ValueError("the memory-mapped array has no file name")
        return cls(array.filename)

    def _layout(self) -> tuple[tuple[int, ...], np.dtype, bool, int]:
        """Shape, dtype, Fortran order and the byte offset of the data in the file."""
        with open(self.path, "rb") as fh:
            try:
                shape, dtype, fortran = _npy_header(fh)
            except ValueError as exc:
                raise DataError(f"{self.path}: not a .npy file ({exc})") from None
            return shape, dtype, fortran, fh.tell()

    def _open(self) -> None:
        shape, dtype, fortran, self._offset = self._layout()
        if len(shape) < 2:
            raise DataError(f"{self.path}: inputs need a row dimension and features, got shape {shape}")
        if fortran:
            raise DataError(f"{self.path}: rows must be stored in C order (got a Fortran-order array)")
        if dtype.hasobject or dtype.kind not in "biuf" or not dtype.isnative:
            raise DataError(f"{self.path}: inputs must be native-endian numbers, got dtype {dtype}")
        rows = shape[1:]
        if self.row_shape is not None:
            if int(np.prod(self.row_shape)) != int(np.prod(rows)):
                raise DataError(f"{self.path}: rows of shape {rows} cannot be read as {self.row_shape}")
            rows = self.row_shape
        self._np_dtype = dtype
        self.shape = (shape[0], *rows)
        stored = torch.from_numpy(np.zeros(0, dtype=dtype)).dtype
        self.dtype = torch.float32 if stored in (torch.float64, torch.bool) else stored  # as in memory
        self._row_bytes = int(np.prod(rows)) * dtype.itemsize
        size = os.path.getsize(self.path)
        if self._offset + shape[0] * self._row_bytes > size:
            raise DataError(f"{self.path}: truncated ({size} bytes; the array needs {shape[0] * self._row_bytes})")
        self._fd = os.open(self.path, os.O_RDONLY)

    def __getstate__(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if k in ("path", "row_shape", "member")}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._open()

    def __del__(self) -> None:
        fd = self.__dict__.get("_fd")
        if fd is not None:
            os.close(fd)

    def describe(self) -> str:
        return f"npy:{_file_id(self.path)}:{self.shape}:{self._np_dtype}"

    def take(self, rows: np.ndarray) -> Tensor:
        """Rows ``rows`` (storage positions) as a tensor in that order, read in file order."""
        rows = self._check_rows(rows)
        order = np.argsort(rows, kind="stable")
        ordered = rows[order]
        out = np.empty((len(rows), *self.shape[1:]), dtype=self._np_dtype)
        buf, size, base = memoryview(out.reshape(-1).view(np.uint8)), self._row_bytes, self._offset
        start = 0
        for end in range(1, len(ordered) + 1):  # one read per run of consecutive rows
            if end == len(ordered) or ordered[end] != ordered[end - 1] + 1:
                os.preadv(self._fd, [buf[start * size : end * size]], base + int(ordered[start]) * size)
                start = end
        if not bool((order == np.arange(len(order))).all()):
            out[order] = out.copy()
        values = torch.from_numpy(out)
        return values if values.dtype == self.dtype else values.to(self.dtype)


def npz_member(path: Path, name: str) -> tuple[tuple[int, ...], np.dtype, bool, int | None]:
    """Shape, dtype and Fortran order of array ``name`` of an ``.npz``, and the byte offset of its
    data in the archive (None for a compressed member, which cannot be read by offset)."""
    try:
        with zipfile.ZipFile(path) as archive:
            info = archive.getinfo(f"{name}.npy")
            with archive.open(info) as fh:
                shape, dtype, fortran = _npy_header(fh)
                header = fh.tell()
        if info.compress_type != zipfile.ZIP_STORED:
            return shape, dtype, fortran, None
        with open(path, "rb") as fh:  # the member's local header: fixed 30 bytes, then name and extra field
            fh.seek(info.header_offset)
            local = fh.read(30)
        if len(local) < 30 or local[:4] != b"PK\x03\x04":
            raise DataError(f"{path}: damaged zip entry for {name!r}")
        name_len, extra_len = struct.unpack("<HH", local[26:30])
        return shape, dtype, fortran, info.header_offset + 30 + name_len + extra_len + header
    except (OSError, KeyError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        if isinstance(exc, DataError):
            raise
        raise DataError(f"{path}: cannot read array {name!r} ({exc})") from None


class NpzArray(NpyArray):
    """Rows of the uncompressed array ``member`` of an ``.npz`` (written by ``np.savez``), read per
    batch at its offset in the archive, exactly like an ``NpyArray``."""

    def __init__(self, path: str | os.PathLike, member: str, row_shape: tuple[int, ...] | None = None):
        self.member = member
        super().__init__(path, row_shape)

    def _layout(self) -> tuple[tuple[int, ...], np.dtype, bool, int]:
        shape, dtype, fortran, offset = npz_member(self.path, self.member)
        if offset is None:
            raise DataError(
                f"{self.path}: array {self.member!r} is compressed (np.savez_compressed) and cannot be streamed; "
                "save it with np.savez, or load it into memory (stream=False)"
            )
        return shape, dtype, fortran, offset

    def describe(self) -> str:
        return f"npz:{_file_id(self.path)}:{self.member}:{self.shape}:{self._np_dtype}"
