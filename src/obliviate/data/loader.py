"""The one way data is read: batches of a ``Dataset``, as tensors on a device.

Methods, ``fit``, ``evaluate`` and the metrics all read through here:

- ``iterate(data, batch_size, shuffle=..., generator=..., device=...)`` yields ``Batch``es
  covering every row once (shuffled with ``generator`` when asked).
- ``take(data, index, device=...)`` gathers the rows at the given positions (random access,
  e.g. a random retain batch to pair with a forget batch).
- ``batches_of(obj, ...)`` also accepts a torch ``DataLoader`` (what ``fit`` trains on when
  handed one).

A ``Batch`` carries ``x`` (a tensor, or a dict of tensors passed to the model as keyword
arguments), ``y`` and ``index`` (the rows' positions in the data set iterated, so a method can
look up per-row values it computed earlier, such as a teacher's outputs).

Three paths, one interface: in-memory tensors are sliced by index in the calling process (the
fast path, as fast as a hand-written loop); inputs kept in files (a ``RowSource``: ``.npy``,
``.npz`` members, Parquet columns, image files) are read per batch, each batch's rows in file
order (in block order for a source read in blocks); any other torch data set goes through a
torch ``DataLoader`` with the data set's ``num_workers``.

A source read in blocks (Parquet row groups) changes how a shuffled pass is drawn: the blocks are
visited in random order, ``window`` blocks at a time, and the rows of those blocks are shuffled
together, so each block is read once per epoch instead of once per batch. When the data hold no
more than ``window`` blocks this is the plain shuffle of the in-memory path (same seed, same
order). ``model_input`` is the documented per-batch transform: ``uint8`` inputs
(images) become ``float32 / 255``; float inputs and integer ids pass unchanged.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import ConcatDataset, DataLoader, default_collate
from torch.utils.data import Dataset as TorchDataset

from obliviate.data.dataset import Dataset, split_item
from obliviate.data.sources import RowSource

Inputs = Tensor | dict[str, Tensor]


@dataclass
class Batch:
    """Model inputs ``x``, targets ``y`` and the rows' positions ``index`` in the data iterated."""

    x: Inputs
    y: Tensor
    index: Tensor

    def __len__(self) -> int:
        return len(self.y)


def model_input(x: Any) -> Any:
    """The per-batch input transform: ``uint8`` tensors (images), also inside a dict batch, become
    ``float32 / 255``; everything else (floats, integer token ids) stays as it is."""
    if isinstance(x, dict):
        return {k: model_input(v) for k, v in x.items()}
    if isinstance(x, Tensor) and x.dtype == torch.uint8:
        return x.float().div_(255.0)
    return x


def to_device(x: Any, device: str | torch.device | None) -> Any:
    """Move a tensor, or every tensor of a dict, to ``device`` (None: leave where it is)."""
    if device is None:
        return x
    if isinstance(x, dict):
        return {k: to_device(v, device) for k, v in x.items()}
    return x.to(device, non_blocking=True) if isinstance(x, Tensor) else x


def _inputs_only(item: Any) -> Any:
    return split_item(item)[0]


class RowsView(TorchDataset):
    """The rows of a ``Dataset`` as a torch data set of inputs (what a DataLoader worker reads)."""

    def __init__(self, data: Dataset):
        self.source = data.source
        self.rows = data.storage_rows().numpy()
        # a user's data set returns (x, y) or a dict; our own sources return inputs only
        self.inputs_only = isinstance(self.source, (Tensor, RowSource, ConcatDataset))

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int) -> Any:
        item = self.source[int(self.rows[i])]
        return item if self.inputs_only else _inputs_only(item)


def take(data: Dataset, index: Tensor, device: str | torch.device | None = None, *, transform: bool = True) -> Batch:
    """The rows of ``data`` at positions ``index`` as one batch (in that order)."""
    index = torch.as_tensor(index, dtype=torch.long)
    cpu_index = index.cpu()
    source = data.source
    storage = cpu_index if data.rows is None else data.rows[cpu_index]
    if isinstance(source, Tensor):
        x = source[storage]
    elif isinstance(source, RowSource):
        x = source.take(storage.numpy())
    else:
        view = RowsView(data)
        x = default_collate([view[int(i)] for i in cpu_index])
    if transform:
        x = model_input(x)
    return Batch(to_device(x, device), to_device(data.y[cpu_index], device), to_device(cpu_index, device))


def _order(data: Dataset, shuffle: bool, generator: torch.Generator | None) -> Tensor:
    """Positions in the order a pass visits them: shuffled with ``generator`` when asked, a few
    blocks at a time for a source read in blocks (see the module's docstring)."""
    n = len(data)
    if not shuffle:
        return torch.arange(n)
    source = data.source
    if not (isinstance(source, RowSource) and source.in_blocks):
        return torch.randperm(n, generator=generator)
    ids, blocks = np.unique(source.blocks(data.storage_rows().numpy()), return_inverse=True)
    if len(ids) <= source.window:
        return torch.randperm(n, generator=generator)
    visit = torch.randperm(len(ids), generator=generator).split(source.window)
    blocks = torch.from_numpy(blocks)
    parts = []
    for window in visit:
        rows = torch.nonzero(torch.isin(blocks, window)).flatten()
        parts.append(rows[torch.randperm(len(rows), generator=generator)])
    return torch.cat(parts)


def iterate(
    data: Dataset,
    batch_size: int,
    *,
    shuffle: bool = False,
    generator: torch.Generator | None = None,
    device: str | torch.device | None = None,
) -> Iterator[Batch]:
    """Every row of ``data`` once, in batches of ``batch_size`` (the last one smaller).

    The order is drawn up front with ``generator`` (so seeded runs repeat); in-memory inputs and
    a ``RowSource`` are gathered here, a torch data set by a ``DataLoader`` with
    ``data.num_workers`` workers that reads the same batches in the same order."""
    splits = _order(data, shuffle, generator).split(batch_size)
    source = data.source
    if isinstance(source, RowSource) and not source.in_blocks:
        rows = data.storage_rows()  # read each batch in file order (same rows, fewer seeks)
        splits = [idx[rows[idx].argsort()] for idx in splits]
    if not data.streamed:
        for idx in splits:
            yield take(data, idx, device)
        return
    loader = DataLoader(
        RowsView(data),
        batch_sampler=[s.tolist() for s in splits],
        num_workers=data.num_workers,
        persistent_workers=False,
    )
    for idx, x in zip(splits, loader, strict=True):
        yield Batch(to_device(model_input(x), device), to_device(data.y[idx], device), to_device(idx, device))


def batches_of(
    data: Dataset | DataLoader | Iterable,
    batch_size: int = 64,
    *,
    shuffle: bool = False,
    generator: torch.Generator | None = None,
    device: str | torch.device | None = None,
) -> Iterator[Batch]:
    """``iterate`` for a ``Dataset``; for a torch ``DataLoader`` (or any iterable of ``(x, y)``
    pairs or dicts), its own batches as they come, with positions counted in arrival order."""
    if isinstance(data, Dataset):
        yield from iterate(data, batch_size, shuffle=shuffle, generator=generator, device=device)
        return
    seen = 0
    for item in data:
        x, y = split_item(item)
        if y is None:
            raise ValueError("a DataLoader batch must hold targets: (x, y) or a dict with 'labels'")
        y = torch.as_tensor(y)
        idx = torch.arange(seen, seen + len(y))
        seen += len(y)
        yield Batch(to_device(model_input(x), device), to_device(y, device), to_device(idx, device))


def count_rows(data: Dataset | DataLoader | Iterable) -> int | None:
    """Rows in ``data`` when known without reading it (a DataLoader over a sized data set)."""
    if isinstance(data, Dataset):
        return len(data)
    inner = getattr(data, "dataset", None)
    try:
        return len(inner) if inner is not None else None
    except TypeError:
        return None
