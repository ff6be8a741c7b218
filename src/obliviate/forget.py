"""What to forget (``ForgetSpec``) and the views of the data a method may see (``UnlearningTask``)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field, model_validator
from torch import Tensor

from obliviate.data import Dataset, DataSplit


class ForgetSpecError(ValueError):
    """A forget request that cannot be served as written."""


def checked_rows(indices: Sequence[int], n: int, what: str = "") -> np.ndarray:
    """``indices`` as int64 row numbers, refused when out of ``0..n-1`` or repeated."""
    rows = np.asarray(indices, dtype=np.int64)
    bad = rows[(rows < 0) | (rows >= n)]
    if len(bad):
        raise ForgetSpecError(f"indices out of range 0..{n - 1}{what}: {bad[:10].tolist()}")
    uniq, counts = np.unique(rows, return_counts=True)
    if (counts > 1).any():
        raise ForgetSpecError(f"duplicate indices: {uniq[counts > 1][:10].tolist()}")
    return rows


class ForgetSpec(BaseModel):
    """A declarative, serialisable description of the training rows to forget.

    Exactly one selector is set: ``classes``, ``subclass`` (super-class, sub-class),
    ``keys`` (every training row whose record key is listed; keys are compared as strings),
    ``indices`` (row positions in the training set), ``fraction`` (random rows, drawn with ``seed``), ``target_range``
    (regression targets in ``[lo, hi]``), ``time_window`` (rows whose target time, from
    ``Dataset.times``, lies in ``[t0, t1]``) or ``series_ids`` (every row of those series,
    from ``Dataset.series``).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    classes: list[int] | None = None
    subclass: tuple[int, int] | None = None
    keys: list[str | int] | None = None
    indices: list[int] | None = None
    fraction: float | None = Field(default=None, gt=0.0, lt=1.0)
    seed: int = 0
    target_range: tuple[float, float] | None = None
    time_window: tuple[float, float] | None = None
    series_ids: list[int] | None = None

    @model_validator(mode="after")
    def _one_selector(self) -> ForgetSpec:
        chosen = [k for k in self._SELECTORS if getattr(self, k) is not None]
        if len(chosen) != 1:
            raise ValueError(f"set exactly one of {', '.join(self._SELECTORS)}; got {chosen or 'none'}")
        if self.target_range is not None and self.target_range[0] > self.target_range[1]:
            raise ValueError(f"target_range lower bound exceeds upper bound: {self.target_range}")
        if self.time_window is not None and self.time_window[0] > self.time_window[1]:
            raise ValueError(f"time_window start is after its end: {self.time_window}")
        if self.keys is not None and len({str(k) for k in self.keys}) != len(self.keys):
            raise ValueError(f"duplicate keys in {self.keys[:10]}")
        if self.series_ids is not None and len(set(self.series_ids)) != len(self.series_ids):
            raise ValueError(f"duplicate series ids in {self.series_ids}")
        return self

    _SELECTORS = ("classes", "subclass", "keys", "indices", "fraction", "target_range", "time_window", "series_ids")

    @property
    def scenario(self) -> str:
        """The kind of forgetting: ``class``, ``subclass``, ``random``, ``target_range``, ``time_window``
        or ``series``."""
        if self.classes is not None:
            return "class"
        if self.subclass is not None:
            return "subclass"
        if self.target_range is not None:
            return "target_range"
        if self.time_window is not None:
            return "time_window"
        if self.series_ids is not None:
            return "series"
        return "random"

    def describe(self) -> str:
        return self.model_dump_json(exclude_none=True, exclude_defaults=False)

    def _check_classes(self, data: Dataset, classes: list[int]) -> None:
        if data.kind != "classification":
            raise ForgetSpecError("class forgetting needs a classification data set")
        unknown = [c for c in classes if not 0 <= c < data.num_classes]
        if unknown:
            raise ForgetSpecError(f"unknown classes {unknown}: the data has {data.num_classes} classes")
        if len(set(classes)) != len(classes):
            raise ForgetSpecError(f"duplicate classes in {classes}")

    def _row_mask(self, data: Dataset) -> Tensor:
        """Rows of ``data`` that belong to the forgotten class / sub-class / range."""
        if self.classes is not None:
            self._check_classes(data, self.classes)
            return torch.isin(data.y, torch.tensor(self.classes))
        if self.subclass is not None:
            sup, sub = self.subclass
            self._check_classes(data, [sup])
            if data.subclasses is None:
                raise ForgetSpecError("sub-class forgetting needs a data set with sub-class labels")
            in_sub = data.subclasses == sub
            if in_sub.any() and not (data.y[in_sub] == sup).all():
                raise ForgetSpecError(f"sub-class {sub} is not part of super-class {sup}")
            return in_sub & (data.y == sup)
        if self.target_range is not None:
            if data.kind != "regression":
                raise ForgetSpecError("target_range forgetting needs a regression data set")
            lo, hi = self.target_range
            return (data.y >= lo) & (data.y <= hi)
        if self.time_window is not None:
            if data.times is None:
                raise ForgetSpecError("time_window forgetting needs a data set with per-row times (a windowed series)")
            t0, t1 = self.time_window
            return (data.times >= t0) & (data.times <= t1)
        if self.series_ids is not None:
            if data.series is None:
                raise ForgetSpecError("series forgetting needs a data set with per-row series ids")
            names = data.meta.get("series_names")
            known = set(range(len(names))) if names else set(data.series.unique().tolist())
            unknown = [s for s in self.series_ids if s not in known]
            if unknown:
                raise ForgetSpecError(f"unknown series ids {unknown}; the data has {sorted(known)}")
            return torch.isin(data.series, torch.tensor(self.series_ids, dtype=torch.long))
        raise AssertionError("row masks exist only for class, sub-class, range, time-window and series selectors")

    def resolve(self, train: Dataset) -> Tensor:
        """Sorted indices of the training rows to forget, validated against ``train``."""
        n = len(train)
        if self.indices is not None:
            forget = torch.tensor(np.sort(checked_rows(self.indices, n)))
        elif self.keys is not None:
            wanted = np.asarray([str(k) for k in self.keys])
            have = train.keys.astype(str)
            unknown = wanted[~np.isin(wanted, have)]
            if len(unknown):
                raise ForgetSpecError(f"{len(unknown)} unknown keys (not in the training rows): {unknown[:5].tolist()}")
            forget = torch.from_numpy(np.flatnonzero(np.isin(have, wanted)))
        elif self.fraction is not None:
            k = int(round(self.fraction * n))
            gen = torch.Generator().manual_seed(self.seed)
            forget = torch.randperm(n, generator=gen)[:k].sort().values
        else:
            forget = torch.nonzero(self._row_mask(train)).flatten()
        if len(forget) == 0:
            raise ForgetSpecError(f"the forget set is empty for {self.describe()}")
        if len(forget) == n:
            raise ForgetSpecError("the request would forget every training row; nothing would remain")
        return forget

    def test_rows(self, test: Dataset) -> Tensor:
        """Test rows of the forgotten class / sub-class / range / time window / series (empty for
        row-level requests)."""
        if self.indices is not None or self.fraction is not None or self.keys is not None:
            return torch.zeros(0, dtype=torch.long)
        return torch.nonzero(self._row_mask(test)).flatten()


class Forgotten(BaseModel):
    """Everything a model has forgotten so far: whole classes, and the record keys of all other rows.

    A model's card carries this record and every later request is built with it
    (``UnlearningTask.build(split, spec, prior=...)``), so rows forgotten earlier stay out of the
    retain set and out of a retrained reference: a second request never brings the first back.
    Class requests are kept as classes (their test rows stay forgotten too); any other request is
    kept as the keys of its rows. Keys are compared as strings; when keys repeat, every row of a
    recorded key counts as forgotten.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    keys: list[str | int] = []
    classes: list[int] = []

    def __bool__(self) -> bool:
        return bool(self.keys or self.classes)

    def train_mask(self, train: Dataset) -> Tensor:
        """Which rows of ``train`` were forgotten before (by class or by key)."""
        mask = self.test_mask(train)
        if self.keys:
            mask |= torch.from_numpy(np.isin(train.keys.astype(str), [str(k) for k in self.keys]))
        return mask

    def test_mask(self, test: Dataset) -> Tensor:
        """Which rows of ``test`` belong to a forgotten class."""
        if not self.classes or test.kind != "classification":
            return torch.zeros(len(test), dtype=torch.bool)
        return torch.isin(test.y, torch.tensor(self.classes))

    def union(self, other: Forgotten) -> Forgotten:
        have = {str(k) for k in self.keys}
        keys = self.keys + [k for k in other.keys if str(k) not in have]
        return Forgotten(keys=keys, classes=sorted(set(self.classes) | set(other.classes)))

    def after(self, task: UnlearningTask) -> Forgotten:
        """This record with ``task``'s request added: what the unlearned model has forgotten."""
        if task.spec.classes is not None:
            return self.union(Forgotten(classes=task.spec.classes))
        return self.union(Forgotten(keys=task.forget_keys))

    def task(self, split: DataSplit) -> UnlearningTask:
        """A task whose forget set is everything recorded here (classes and keys), to evaluate a model
        on all it has forgotten."""
        if not self:
            raise ForgetSpecError("nothing has been forgotten yet: the record lists no classes and no keys")
        if self.classes:
            spec, rest = ForgetSpec(classes=self.classes), Forgotten(keys=self.keys)
        else:
            spec, rest = ForgetSpec(keys=self.keys), Forgotten()
        return UnlearningTask.build(split, spec, prior=rest, count_prior=True)


def _file_rows(split: DataSplit) -> int | None:
    """Rows in the user's file when the record keys are the default ones (the row numbers of the
    data as given), else None."""
    train, test = split.train.keys, split.test.keys
    if split.train.meta.get("key") or train.dtype.kind not in "iu" or test.dtype.kind not in "iu":
        return None
    together = np.sort(np.concatenate([train, test]))
    if np.array_equal(together, np.arange(len(together))):
        return len(together)  # one file, split here
    if np.array_equal(np.sort(train), np.arange(len(train))):
        return len(train)  # a given train part: its own row numbers
    return None


def file_rows(spec: ForgetSpec, split: DataSplit) -> ForgetSpec:
    """A request whose ``indices`` name rows of the user's file, as the request by key it means.

    What a user types (``obliviate forget --indices``, ``obliviate pipeline submit --indices``)
    names rows of their data as given, numbered from 0 before any split, never positions in the
    shuffled training split. Those row numbers are the record keys when the data bring no keys of
    their own, so the request becomes ``ForgetSpec(keys=...)``; data with their own keys (a key
    column, image paths, a keys array) are named by key, and ``indices`` are refused. Requests
    without ``indices`` are returned unchanged.
    """
    if spec.indices is None:
        return spec
    n = _file_rows(split)
    if n is None:
        raise ForgetSpecError(
            "these data have their own record keys (a key column, image paths, a keys array): use --keys"
        )
    return ForgetSpec(keys=checked_rows(spec.indices, n, " (rows of the data file)").tolist())


class DataAccessError(PermissionError):
    """A method asked for data it did not declare in ``needs``."""


VIEWS = frozenset({"forget", "retain", "train", "test", "forget_test"})


@dataclass(frozen=True, eq=False)
class UnlearningTask:
    """A forget request resolved against a train/test split: the views every part works on.

    ``prior`` is what the model forgot before this request (from its card): those rows are in
    neither the forget nor the retain view, and the ``train`` view methods see leaves them out.
    With ``count_prior`` they join the forget (and forget-test) views instead, to evaluate
    everything a model has forgotten.
    """

    split: DataSplit
    spec: ForgetSpec
    prior: Forgotten = field(default_factory=Forgotten)
    count_prior: bool = False

    @cached_property
    def prior_idx(self) -> Tensor:
        """Training rows forgotten by earlier requests."""
        return torch.nonzero(self.prior.train_mask(self.split.train)).flatten()

    @cached_property
    def forget_idx(self) -> Tensor:
        forget = self.spec.resolve(self.split.train)
        if self.count_prior:
            forget = torch.cat([forget, self.prior_idx]).unique()
        return forget

    @cached_property
    def retain_idx(self) -> Tensor:
        mask = torch.ones(len(self.split.train), dtype=torch.bool)
        mask[self.forget_idx] = False
        mask[self.prior_idx] = False
        return torch.nonzero(mask).flatten()

    @cached_property
    def current_idx(self) -> Tensor:
        """Training rows the model was trained on and has not forgotten before this request."""
        mask = torch.ones(len(self.split.train), dtype=torch.bool)
        mask[self.prior_idx] = False
        mask[self.forget_idx] = True
        return torch.nonzero(mask).flatten()

    @cached_property
    def forget_test_idx(self) -> Tensor:
        rows = self.spec.test_rows(self.split.test)
        if self.count_prior:
            rows = torch.cat([rows, torch.nonzero(self.prior.test_mask(self.split.test)).flatten()]).unique()
        return rows

    @cached_property
    def retain_test_idx(self) -> Tensor:
        """Test rows outside every forgotten class / range (all test rows for random forgetting)."""
        mask = ~self.prior.test_mask(self.split.test)
        mask[self.forget_test_idx] = False
        return torch.nonzero(mask).flatten()

    @cached_property
    def forget_keys(self) -> list[str | int]:
        """Record keys of the forget rows, each once, in row order: what cards, reports and audit
        records list."""
        keys = self.split.train.keys[self.forget_idx.numpy()]
        _, first = np.unique(keys, return_index=True)
        return keys[np.sort(first)].tolist()

    @property
    def forgotten(self) -> Forgotten:
        """What the model has forgotten once this request is served (earlier requests included)."""
        return self.prior.after(self)

    @cached_property
    def forget(self) -> Dataset:
        """The forget rows: an index-backed view of the training data (no copy), like every view."""
        return self.split.train.subset(self.forget_idx)

    @cached_property
    def retain(self) -> Dataset:
        return self.split.train.subset(self.retain_idx)

    @property
    def train(self) -> Dataset:
        return self.split.train

    @property
    def test(self) -> Dataset:
        return self.split.test

    @cached_property
    def forget_test(self) -> Dataset:
        return self.split.test.subset(self.forget_test_idx)

    @cached_property
    def retain_test(self) -> Dataset:
        return self.split.test.subset(self.retain_test_idx)

    @property
    def held_out_view(self) -> str:
        """The view of never-seen rows to compare forget rows with: the test rows of the same kind
        (``forget_test``) when the request names a class, range, window or series, else all test rows."""
        return "test" if self.spec.scenario == "random" else "forget_test"

    @property
    def kind(self) -> str:
        return self.split.train.kind

    @property
    def num_classes(self) -> int:
        return self.split.train.num_classes

    @property
    def num_outputs(self) -> int:
        return self.split.train.num_outputs

    @property
    def input_shape(self) -> tuple[int, ...]:
        return self.split.train.input_shape

    @property
    def continuous_inputs(self) -> bool:
        """Whether the model reads float inputs (see ``Dataset.continuous_inputs``)."""
        return self.split.train.continuous_inputs

    @property
    def forget_classes(self) -> list[int]:
        """Classes forgotten as a whole; for a sub-class request, its super-class is not listed.

        A class request also lists the classes forgotten before, so that methods which rebuild
        the retained classes from the model (zero-shot ones) never restore them."""
        if self.spec.classes is None:
            return []
        return list(self.spec.classes) + [c for c in self.prior.classes if c not in self.spec.classes]

    @classmethod
    def build(
        cls, split: DataSplit | tuple, spec: ForgetSpec, prior: Forgotten | None = None, count_prior: bool = False
    ) -> UnlearningTask:
        """Resolve and validate eagerly so a bad request fails before any work starts.

        ``split`` is a ``DataSplit`` or a ``(train, test)`` pair of data sets (obliviate or
        map-style torch ones, see ``DataSplit.from_torch``)."""
        if not isinstance(split, DataSplit):
            train, test = split
            split = DataSplit(train, test)
        if spec.keys is not None:
            wanted = np.asarray([str(k) for k in spec.keys])
            held_out = wanted[
                ~np.isin(wanted, split.train.keys.astype(str)) & np.isin(wanted, split.test.keys.astype(str))
            ]
            if len(held_out):
                raise ForgetSpecError(
                    f"keys {held_out[:5].tolist()} are only in the held-out test split: the model never trained on them"
                )
        task = cls(split, spec, prior or Forgotten(), count_prior)
        _ = task.forget_idx, task.forget_test_idx
        if len(task.retain_idx) == 0:
            raise ForgetSpecError("with the rows forgotten before, this request would leave no training row to retain")
        return task

    def view(self, needs: frozenset[str]) -> TaskView:
        return TaskView(self, needs)


class TaskView:
    """What a method is allowed to see of a task: metadata always, data only if declared.

    Zero-glance and zero-shot methods declare no or few views, and reading any other
    raises ``DataAccessError``, which makes the privacy setting enforceable.
    """

    def __init__(self, task: UnlearningTask, needs: frozenset[str]):
        unknown = set(needs) - VIEWS
        if unknown:
            raise ValueError(f"unknown data views {sorted(unknown)}; known: {sorted(VIEWS)}")
        self._task = task
        self.needs = frozenset(needs)
        self.kind = task.kind
        self.num_classes = task.num_classes
        self.num_outputs = task.num_outputs
        self.input_shape = task.input_shape
        self.forget_classes = task.forget_classes
        self.scenario = task.spec.scenario

    def _get(self, name: str) -> Dataset:
        if name not in self.needs:
            raise DataAccessError(f"this method declared needs={sorted(self.needs)} and may not read the {name!r} data")
        return getattr(self._task, name)

    @property
    def forget(self) -> Dataset:
        return self._get("forget")

    @property
    def retain(self) -> Dataset:
        return self._get("retain")

    @property
    def train(self) -> Dataset:
        """The training rows the model still knows (rows forgotten by earlier requests left out)."""
        self._get("train")
        task = self._task
        return task.train.subset(task.current_idx) if len(task.prior_idx) else task.train

    @property
    def test(self) -> Dataset:
        return self._get("test")

    @property
    def forget_test(self) -> Dataset:
        return self._get("forget_test")

    @property
    def train_forget_mask(self) -> Tensor:
        """Which rows of ``train`` are forget rows (needs both the train and forget views)."""
        self._get("train")
        self._get("forget")
        task = self._task
        return torch.isin(task.current_idx, task.forget_idx)
