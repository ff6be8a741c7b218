"""In-memory data sets: feature and target tensors plus the labels unlearning needs."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field, replace
from typing import Literal

import numpy as np
import torch
from torch import Tensor

TaskKind = Literal["classification", "regression"]


class DataError(ValueError):
    """Raised for data that cannot be used as given (NaNs, shape or label mismatches)."""


@dataclass(frozen=True, eq=False)
class Dataset:
    """Features ``X`` and targets ``y`` held as tensors, with what forgetting needs to know.

    ``subclasses`` holds a fine label per row when ``y`` is a super-class (for example
    CIFAR-100 coarse labels with the fine label kept), so that a sub-class can be forgotten
    while the model still predicts super-classes.

    ``keys`` gives every row a stable record key (a user id, a file row): requests, cards and
    audit records speak in keys, never in positions of a shuffled split. Without keys, a row's
    key is its row number in the data as given (before any split).
    """

    X: Tensor
    y: Tensor
    kind: TaskKind = "classification"
    class_names: tuple[str, ...] | None = None
    subclasses: Tensor | None = None
    subclass_names: tuple[str, ...] | None = None
    name: str = "data"
    meta: dict = field(default_factory=dict)
    times: Tensor | None = None
    series: Tensor | None = None
    keys: np.ndarray | None = None

    def __post_init__(self) -> None:
        X = torch.as_tensor(self.X)
        y = torch.as_tensor(self.y)
        if X.ndim < 2:
            raise DataError(f"{self.name}: X must have a row dimension and features, got shape {tuple(X.shape)}")
        if len(X) != len(y):
            raise DataError(f"{self.name}: X has {len(X)} rows but y has {len(y)}")
        X = X.float()
        if not torch.isfinite(X).all():
            raise DataError(f"{self.name}: X contains NaN or infinite values")
        if self.kind == "classification":
            if y.is_floating_point() and (not torch.isfinite(y).all() or not torch.equal(y, y.round())):
                raise DataError(f"{self.name}: classification targets must be integers")
            y = y.long()
            if len(y) and int(y.min()) < 0:
                raise DataError(f"{self.name}: class labels must be >= 0")
            if self.class_names is not None and len(y) and int(y.max()) >= len(self.class_names):
                raise DataError(f"{self.name}: label {int(y.max())} has no name among {len(self.class_names)} classes")
        elif self.kind == "regression":
            y = y.float()
            if not torch.isfinite(y).all():
                raise DataError(f"{self.name}: y contains NaN or infinite values")
        else:
            raise DataError(f"unknown task kind {self.kind!r}")
        if self.subclasses is not None:
            sub = torch.as_tensor(self.subclasses).long()
            if len(sub) != len(y):
                raise DataError(f"{self.name}: subclasses has {len(sub)} rows but y has {len(y)}")
            object.__setattr__(self, "subclasses", sub)
        for name, dtype in (("times", torch.float64), ("series", torch.long)):
            values = getattr(self, name)
            if values is not None:
                values = torch.as_tensor(values).to(dtype)
                if values.shape != y.shape[:1]:
                    raise DataError(f"{self.name}: {name} has shape {tuple(values.shape)}, expected ({len(y)},)")
                if name == "times" and not torch.isfinite(values).all():
                    raise DataError(f"{self.name}: times contain NaN or infinite values")
                object.__setattr__(self, name, values)
        object.__setattr__(self, "X", X)
        object.__setattr__(self, "y", y)
        object.__setattr__(self, "keys", _as_keys(self.keys, len(y), self.name))

    def __repr__(self) -> str:
        return f"Dataset({self.name!r}, {self.kind}, rows={len(self)}, input_shape={self.input_shape})"

    def __len__(self) -> int:
        return len(self.y)

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.X.shape[1:])

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

    def subset(self, idx: Tensor | np.ndarray | list[int]) -> Dataset:
        """Rows ``idx`` as a new data set that shares names and metadata."""
        idx = torch.as_tensor(idx, dtype=torch.long)

        def pick(values: Tensor | None) -> Tensor | None:
            return values[idx] if values is not None else None

        return replace(
            self,
            X=self.X[idx],
            y=self.y[idx],
            subclasses=pick(self.subclasses),
            times=pick(self.times),
            series=pick(self.series),
            keys=self.keys[idx.numpy()],
        )

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
        return replace(
            self,
            y=mapping[self.y],
            class_names=names,
            subclasses=self.y.clone(),
            subclass_names=self.class_names,
        )

    def fingerprint(self) -> str:
        """sha256 of the tensors, to tie models, caches and audit records to exact data."""
        h = hashlib.sha256()
        for t in (self.X, self.y) + ((self.subclasses,) if self.subclasses is not None else ()):
            h.update(str(tuple(t.shape)).encode())
            h.update(t.contiguous().numpy().tobytes())
        return h.hexdigest()


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
    """A train/test pair; forget indices always refer to rows of ``train``."""

    train: Dataset
    test: Dataset

    def __post_init__(self) -> None:
        if self.train.kind != self.test.kind:
            raise DataError("train and test must be the same task kind")
        if self.train.input_shape != self.test.input_shape:
            raise DataError(f"train rows have shape {self.train.input_shape}, test rows {self.test.input_shape}")


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
