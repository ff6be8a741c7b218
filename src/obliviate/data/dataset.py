"""Data sets: inputs (in-memory tensors, a memory-mapped array, or any map-style torch ``Dataset``)
with targets and the labels unlearning needs.

Inputs keep their dtype: floating inputs stay floating (float64 becomes float32, the dtype of
the models), integer inputs are token ids and stay integers, and ``uint8`` images stay
``uint8`` in memory and are turned into ``float32 / 255`` per batch by the loader
(``obliviate.data.loader.model_input``), so a set of images costs a quarter of the memory.

A ``Dataset`` is a *view*: ``subset`` selects rows by index without copying inputs, which is
how task views (forget, retain, test...) are made. Targets, keys and the other per-row labels
are small and always held in memory; inputs are read in batches by ``obliviate.data.loader``.
"""

from __future__ import annotations

import copy
import hashlib
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset as TorchDataset
from torch.utils.data import TensorDataset

from obliviate.data.memmap import NpyArray
from obliviate.data.sources import DataError, RowSource

TaskKind = Literal["classification", "regression"]

LABEL_KEYS = ("labels", "label", "y", "target", "targets")
"""Keys under which a dict-returning torch data set holds its target; every other key is an input."""


def split_item(item: Any) -> tuple[Any, Any]:
    """``(inputs, target)`` of one item of a torch data set: ``(x, y)`` tuples, or dicts whose
    target sits under one of ``LABEL_KEYS`` (the rest is the input dict, passed to the model as
    keyword arguments)."""
    if isinstance(item, dict):
        label = next((k for k in LABEL_KEYS if k in item), None)
        inputs = {k: v for k, v in item.items() if k != label}
        return inputs, (item[label] if label is not None else None)
    if isinstance(item, (tuple, list)) and len(item) >= 2:
        return item[0], item[1]
    raise DataError(f"a torch data set must return (x, y) or a dict with a label, got {type(item).__name__}")


def _as_tensor_inputs(X: Any) -> Tensor:
    X = torch.as_tensor(X)
    if X.dtype == torch.float64 or X.dtype == torch.bool:
        X = X.float()
    return X


class Dataset:
    """Inputs ``X`` and targets ``y``, with what forgetting needs to know.

    ``X`` may be a tensor (the fast path), a ``RowSource`` read per batch (``NpyArray``,
    ``NpzArray``, ``ParquetColumns``, ``ImageFiles``; an ``np.memmap`` becomes an ``NpyArray``), a
    numpy array (taken into memory), or a map-style torch ``Dataset`` returning ``(x, y)`` or a
    dict; see ``from_torch``. ``rows`` (internal) selects the rows of that storage this view holds.

    ``subclasses`` holds a fine label per row when ``y`` is a super-class (for example
    CIFAR-100 coarse labels with the fine label kept), so that a sub-class can be forgotten
    while the model still predicts super-classes.

    ``keys`` gives every row a stable record key (a user id, a file row): requests, cards and
    audit records speak in keys, never in positions of a shuffled split. Without keys, a row's
    key is its row number in the data as given (before any split).

    ``meta`` describes the data set (feature names, the key column...); a numpy array or tensor
    in it with one entry per row is per-row metadata and follows the rows into every view.

    ``num_workers``: loader worker processes for a torch data set (decoding images, reading
    files); in-memory and memory-mapped inputs are sliced in the calling process.
    """

    def __init__(
        self,
        X: Any,
        y: Any = None,
        kind: TaskKind = "classification",
        class_names: tuple[str, ...] | None = None,
        subclasses: Tensor | None = None,
        subclass_names: tuple[str, ...] | None = None,
        name: str = "data",
        meta: dict | None = None,
        times: Tensor | None = None,
        series: Tensor | None = None,
        keys: Any = None,
        *,
        num_workers: int = 0,
    ):
        self.name = name
        self.kind = kind
        self.class_names = tuple(class_names) if class_names is not None else None
        self.subclass_names = tuple(subclass_names) if subclass_names is not None else None
        self.meta = dict(meta or {})
        self.num_workers = num_workers
        self.rows: Tensor | None = None
        if isinstance(X, TensorDataset) and len(X.tensors) == 2 and y is None:
            X, y = X.tensors
        if isinstance(X, np.memmap):
            X = NpyArray.wrap(X)
        if isinstance(X, TorchDataset) and not isinstance(X, TensorDataset):
            self.source: Any = X
            if y is None:
                y = _read_labels(X, num_workers)
        elif isinstance(X, RowSource):
            self.source = X
        else:
            self.source = _as_tensor_inputs(X)
            if self.source.ndim < 2:
                raise DataError(
                    f"{name}: X must have a row dimension and features, got shape {tuple(self.source.shape)}"
                )
            if self.source.is_floating_point() and not torch.isfinite(self.source).all():
                raise DataError(f"{name}: X contains NaN or infinite values")
        if y is None:
            raise DataError(f"{name}: targets y are required for in-memory inputs")
        y = torch.as_tensor(y)
        if len(self.source) != len(y):
            raise DataError(f"{name}: X has {len(self.source)} rows but y has {len(y)}")
        self.y = _check_targets(y, kind, self.class_names, name)
        self.subclasses = None
        if subclasses is not None:
            sub = torch.as_tensor(subclasses).long()
            if len(sub) != len(y):
                raise DataError(f"{name}: subclasses has {len(sub)} rows but y has {len(y)}")
            self.subclasses = sub
        for attr, values, dtype in (("times", times, torch.float64), ("series", series, torch.long)):
            if values is not None:
                values = torch.as_tensor(values).to(dtype)
                if values.shape != self.y.shape[:1]:
                    raise DataError(f"{name}: {attr} has shape {tuple(values.shape)}, expected ({len(y)},)")
                if attr == "times" and not torch.isfinite(values).all():
                    raise DataError(f"{name}: times contain NaN or infinite values")
            setattr(self, attr, values)
        self.keys = _as_keys(keys, len(self.y), name)
        self._first_input = None

    @classmethod
    def from_torch(
        cls,
        data: TorchDataset,
        *,
        kind: TaskKind = "classification",
        class_names: tuple[str, ...] | list[str] | None = None,
        keys: Any = None,
        name: str | None = None,
        num_workers: int = 0,
    ) -> Dataset:
        """Wrap a map-style torch data set returning ``(x, y)`` or a dict.

        Labels are read once: from a ``targets`` attribute when the data set has one (as
        torchvision's do), else in one pass over the data. Inputs are read in batches when
        used, through a torch ``DataLoader`` with ``num_workers`` workers. A ``TensorDataset``
        of ``(X, y)`` becomes an in-memory data set.
        """
        if class_names is None:
            classes = getattr(data, "classes", None)
            class_names = tuple(map(str, classes)) if classes is not None and kind == "classification" else None
        return cls(
            data,
            kind=kind,
            class_names=class_names,
            keys=keys,
            name=name or type(data).__name__,
            num_workers=num_workers,
        )

    def __repr__(self) -> str:
        return f"Dataset({self.name!r}, {self.kind}, rows={len(self)}, input_shape={self.input_shape})"

    def __len__(self) -> int:
        return len(self.y)

    # ---- inputs -------------------------------------------------------------------------------

    @property
    def in_memory(self) -> bool:
        """True when the inputs are one tensor in memory (sliced by index: the fast path)."""
        return isinstance(self.source, Tensor)

    @property
    def streamed(self) -> bool:
        """True for a torch data set (read through a ``DataLoader``); a ``RowSource`` is read by the
        loader itself."""
        return not isinstance(self.source, (Tensor, RowSource))

    def storage_rows(self) -> Tensor:
        """Positions in the underlying storage of this view's rows, in order."""
        return self.rows if self.rows is not None else torch.arange(len(self.source))

    def _first(self) -> Any:
        if self._first_input is None:
            from obliviate.data.loader import take

            self._first_input = take(self, torch.zeros(1, dtype=torch.long)).x if len(self) else None
        return self._first_input

    @property
    def input_shape(self) -> tuple[int, ...]:
        """Shape of one row's input (for dict inputs, of its first entry)."""
        if isinstance(self.source, (Tensor, RowSource)):
            return tuple(self.source.shape[1:])
        x = self._first()
        if x is None:
            return ()
        if isinstance(x, dict):
            x = next(iter(x.values()))
        return tuple(x.shape[1:])

    @property
    def input_dtype(self) -> torch.dtype | None:
        """The dtype a model receives (after the per-batch transform); None for dict inputs."""
        if isinstance(self.source, (Tensor, RowSource)):
            dtype = self.source.dtype
        else:
            x = self._first()
            if x is None or isinstance(x, dict):
                return None
            dtype = x.dtype
        return torch.float32 if dtype == torch.uint8 else dtype

    @property
    def continuous_inputs(self) -> bool:
        """True when the model reads floating-point inputs (so inputs can be synthesised or
        attacked by gradient); False for token ids and dict inputs."""
        dtype = self.input_dtype
        return dtype is not None and dtype.is_floating_point

    @property
    def X(self) -> Any:
        """This view's inputs gathered into memory, as stored (``uint8`` stays ``uint8``).

        A convenience for small data and tests: library code reads batches through
        ``obliviate.data.loader`` instead, which never holds more than a batch."""
        from obliviate.data.loader import take

        if isinstance(self.source, Tensor):
            return self.source if self.rows is None else self.source[self.rows]
        return take(self, torch.arange(len(self)), transform=False).x

    # ---- labels -------------------------------------------------------------------------------

    @property
    def num_classes(self) -> int:
        """Number of classes (from the names when given, else from the labels); 0 for regression."""
        if self.kind != "classification":
            return 0
        if self.class_names is not None:
            return len(self.class_names)
        return int(self.y.max()) + 1 if len(self.y) else 0

    @property
    def num_outputs(self) -> int:
        return self.num_classes if self.kind == "classification" else 1

    # ---- views --------------------------------------------------------------------------------

    def _derive(self, **changes: Any) -> Dataset:
        new = copy.copy(self)
        new.__dict__.update(changes)
        return new

    def subset(self, idx: Tensor | np.ndarray | list[int]) -> Dataset:
        """Rows ``idx`` as a view of the same inputs (no copy) that shares names and metadata."""
        idx = torch.as_tensor(idx, dtype=torch.long).cpu()

        def pick(values: Tensor | None) -> Tensor | None:
            return values[idx] if values is not None else None

        return self._derive(
            rows=self.storage_rows()[idx],
            y=self.y[idx],
            subclasses=pick(self.subclasses),
            times=pick(self.times),
            series=pick(self.series),
            keys=self.keys[idx.numpy()],
            meta={k: _pick_rows(v, idx) if _per_row(v, len(self)) else v for k, v in self.meta.items()},
            _first_input=None,
        )

    def with_targets(self, y: Tensor) -> Dataset:
        """The same rows with other targets (relabelling methods); inputs are shared."""
        y = torch.as_tensor(y)
        if len(y) != len(self):
            raise DataError(f"{self.name}: {len(y)} targets for {len(self)} rows")
        return self._derive(y=_check_targets(y.cpu(), self.kind, None, self.name))

    def group_classes(self, groups: list[list[int]], names: list[str] | None = None) -> Dataset:
        """Relabel classes into super-classes, keeping the old label as the sub-class.

        ``groups[g]`` lists the classes that make up super-class ``g``; every class must
        appear exactly once.
        """
        if self.kind != "classification":
            raise DataError("only classification data can be grouped into super-classes")
        flat = [c for g in groups for c in g]
        if sorted(flat) != list(range(self.num_classes)):
            raise DataError(f"groups must cover classes 0..{self.num_classes - 1} exactly once")
        mapping = torch.empty(self.num_classes, dtype=torch.long)
        for g, members in enumerate(groups):
            mapping[members] = g
        names = tuple(names) if names else tuple(f"group{g}" for g in range(len(groups)))
        return self._derive(
            y=mapping[self.y],
            class_names=names,
            subclasses=self.y.clone(),
            subclass_names=self.class_names,
        )

    def fingerprint(self) -> str:
        """sha256 of the data, to tie models, caches and audit records to exact data.

        In-memory inputs are hashed in full; a file read per batch (``RowSource``) by its path,
        size, layout and the rows held; a torch data set by its type and rows (its inputs are not
        read)."""
        h = hashlib.sha256()
        if isinstance(self.source, Tensor):
            parts: tuple = (self.X,)
        else:
            desc = self.source.describe() if isinstance(self.source, RowSource) else type(self.source).__qualname__
            h.update(desc.encode())
            parts = (self.storage_rows(),)
        for t in parts + (self.y,) + ((self.subclasses,) if self.subclasses is not None else ()):
            h.update(str(tuple(t.shape)).encode())
            h.update(t.contiguous().numpy().tobytes())
        return h.hexdigest()


def concat(parts: list[Dataset], name: str | None = None) -> Dataset:
    """The rows of ``parts`` one after the other (with their own targets).

    Views of the same inputs stay one index-backed view; in-memory parts are concatenated;
    anything else is chained as a torch ``ConcatDataset`` read through the loader."""
    first = parts[0]
    kind = first.kind
    y = torch.cat([p.y for p in parts])
    keys = np.concatenate([p.keys for p in parts])
    meta = {k: v for k, v in first.meta.items() if not _per_row(v, len(first))}
    for k, v in first.meta.items():  # per-row metadata that every part has is joined, else dropped
        if _per_row(v, len(first)) and all(_per_row(p.meta.get(k), len(p)) for p in parts):
            joined = [p.meta[k] for p in parts]
            meta[k] = np.concatenate(joined) if isinstance(v, np.ndarray) else torch.cat(joined)
    if all(p.source is first.source for p in parts):
        rows = torch.cat([p.storage_rows() for p in parts])
        return first._derive(
            rows=rows, y=y, keys=keys, meta=meta, subclasses=None, times=None, series=None, _first_input=None
        )
    if all(p.in_memory for p in parts):
        X = torch.cat([p.X for p in parts])
    else:
        from torch.utils.data import ConcatDataset

        from obliviate.data.loader import RowsView

        X = ConcatDataset([RowsView(p) for p in parts])
    return Dataset(
        X, y, kind=kind, class_names=first.class_names, name=name or first.name, keys=keys, meta=meta,
        num_workers=max(p.num_workers for p in parts),
    )  # fmt: skip


def _per_row(value: Any, n: int) -> bool:
    """Whether a ``meta`` entry is per-row metadata: an array or tensor with one entry per row."""
    return isinstance(value, (np.ndarray, Tensor)) and value.ndim >= 1 and len(value) == n


def _pick_rows(value: np.ndarray | Tensor, idx: Tensor) -> np.ndarray | Tensor:
    return value[idx.numpy()] if isinstance(value, np.ndarray) else value[idx.to(value.device)]


def _check_targets(y: Tensor, kind: str, class_names: tuple | None, name: str) -> Tensor:
    if kind == "classification":
        if y.is_floating_point() and (not torch.isfinite(y).all() or not torch.equal(y, y.round())):
            raise DataError(f"{name}: classification targets must be integers")
        y = y.long()
        if len(y) and int(y.min()) < 0:
            raise DataError(f"{name}: class labels must be >= 0")
        if class_names is not None and len(y) and int(y.max()) >= len(class_names):
            raise DataError(f"{name}: label {int(y.max())} has no name among {len(class_names)} classes")
        return y
    if kind == "regression":
        y = y.float()
        if not torch.isfinite(y).all():
            raise DataError(f"{name}: y contains NaN or infinite values")
        return y
    raise DataError(f"unknown task kind {kind!r}")


def _read_labels(data: TorchDataset, num_workers: int) -> Tensor:
    """Targets of a torch data set: its ``targets`` attribute, else one pass over the items."""
    targets = getattr(data, "targets", None)
    if targets is not None:
        return torch.as_tensor(np.asarray(targets))
    from torch.utils.data import DataLoader

    loader = DataLoader(data, batch_size=256, num_workers=num_workers, collate_fn=_labels_only)
    parts = [t for t in loader]
    return torch.cat(parts) if parts else torch.zeros(0, dtype=torch.long)


def _labels_only(items: list) -> Tensor:
    labels = [split_item(item)[1] for item in items]
    if any(label is None for label in labels):
        raise DataError("a dict item has no label under any of " + ", ".join(LABEL_KEYS))
    return torch.as_tensor(np.asarray([torch.as_tensor(v).item() for v in labels]))


def _as_keys(keys, n: int, name: str) -> np.ndarray:
    """Record keys as a 1-D numpy array (ints or strings), one per row; row numbers by default.

    Keys may repeat: a person's key marks every row of that person."""
    if keys is None:
        return np.arange(n)
    arr = np.asarray(keys)
    if arr.ndim != 1 or len(arr) != n:
        raise DataError(f"{name}: keys must be one per row ({n}), got shape {arr.shape}")
    if arr.dtype.kind not in "iuU":
        arr = arr.astype(str)
    return arr


@dataclass(frozen=True)
class DataSplit:
    """A train/test pair; forget indices always refer to rows of ``train``.

    Torch data sets given directly (a ``TensorDataset``, say) are wrapped as classification
    data; use ``from_torch`` to say more (kind, class names, keys)."""

    train: Dataset
    test: Dataset

    def __post_init__(self) -> None:
        for part in ("train", "test"):
            value = getattr(self, part)
            if not isinstance(value, Dataset):
                if not isinstance(value, TorchDataset):
                    raise DataError(
                        f"{part} must be an obliviate Dataset or a torch Dataset, not {type(value).__name__}"
                    )
                object.__setattr__(self, part, Dataset.from_torch(value, name=part))
        if self.train.kind != self.test.kind:
            raise DataError("train and test must be the same task kind")
        if self.train.input_shape != self.test.input_shape:
            raise DataError(f"train rows have shape {self.train.input_shape}, test rows {self.test.input_shape}")

    @classmethod
    def from_torch(
        cls,
        train: TorchDataset,
        test: TorchDataset,
        *,
        kind: TaskKind = "classification",
        class_names: tuple[str, ...] | list[str] | None = None,
        keys: Any = None,
        num_workers: int = 0,
    ) -> DataSplit:
        """A split from two map-style torch data sets (see ``Dataset.from_torch``); ``keys`` are
        the record keys of the training rows."""
        make = dict(kind=kind, class_names=class_names, num_workers=num_workers)
        return cls(
            Dataset.from_torch(train, keys=keys, name="train", **make),
            Dataset.from_torch(test, name="test", **make),
        )


def split_dataset(data: Dataset, test_fraction: float = 0.2, seed: int = 0) -> DataSplit:
    """Seeded train/test split, stratified by class for classification."""
    if not 0.0 < test_fraction < 1.0:
        raise DataError(f"test_fraction must be in (0, 1), got {test_fraction}")
    rng = np.random.default_rng(seed)
    n = len(data)
    if data.kind == "classification":
        labels = data.y.numpy()
        test_idx = []
        for c in np.unique(labels):
            rows = np.flatnonzero(labels == c)
            rng.shuffle(rows)
            test_idx.append(rows[: max(1, round(len(rows) * test_fraction))])
        test_idx = np.sort(np.concatenate(test_idx))
    else:
        test_idx = np.sort(rng.permutation(n)[: max(1, round(n * test_fraction))])
    train_mask = np.ones(n, dtype=bool)
    train_mask[test_idx] = False
    return DataSplit(train=data.subset(np.flatnonzero(train_mask)), test=data.subset(test_idx))
