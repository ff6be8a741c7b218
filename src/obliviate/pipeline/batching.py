"""Turning a batch of requests into one ``ForgetSpec`` over the rows the model still knows.

Requests name rows of the original training split. Rows forgotten by earlier batches are
no longer part of the model's training data, so each batch works on the *current* training
set (original rows minus everything forgotten so far): its retain view excludes old forget
rows, and its forget view holds only the new ones.

A batch never changes what a request means: class requests are batched only with class
requests (the merged spec stays a class spec, so class-forgetting methods, the held-out
forget-test view and the class gates all apply), and row-like requests only with each other
(merged as indices, gated as rows). Merging a class into row indices would let a model that
still recognises the class on unseen images pass the row gates.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from obliviate.data import Dataset, DataSplit
from obliviate.forget import ForgetSpec, UnlearningTask


@dataclass(frozen=True)
class BatchPlan:
    rows: list[int]
    """Original training-row ids this batch forgets (new ones only), sorted."""
    already: list[int]
    """Requested rows that earlier batches had already forgotten."""
    alive: torch.Tensor
    """Original ids of the rows the parent model was trained on, sorted."""
    spec: ForgetSpec | None
    """The merged request against ``train.subset(alive)``; None when nothing new is asked."""

    def task(self, split: DataSplit) -> UnlearningTask:
        current = DataSplit(split.train.subset(self.alive), split.test)
        return UnlearningTask.build(current, self.spec)


@dataclass(frozen=True)
class KeyPlan:
    """A causal LM's batch: people (keys) rather than rows."""

    rows: list[str]
    """Keys this batch forgets (new ones only), sorted."""
    already: list[str]
    """Requested keys that earlier batches had already forgotten."""
    gone: list[str]
    """Keys forgotten before this batch (their facts are no longer the model's to keep)."""
    spec: ForgetSpec | None
    """The merged request (``keys``); None when nothing new is asked."""


def plan_keys(specs: list[ForgetSpec], forgotten: list[str]) -> KeyPlan:
    """Merge key requests against a causal LM given the keys already forgotten."""
    if not specs:
        raise ValueError("a batch needs at least one request")
    asked = {str(k) for s in specs for k in s.keys}
    new = sorted(asked - set(forgotten))
    return KeyPlan(new, sorted(asked & set(forgotten)), sorted(forgotten), ForgetSpec(keys=new) if new else None)


def batch_kind(spec: dict) -> str:
    """``class`` for whole-class requests, ``rows`` for everything else; batches hold one kind."""
    return "class" if spec.get("classes") is not None else "rows"


def plan_batch(specs: list[ForgetSpec], train: Dataset, forgotten: list[int]) -> BatchPlan:
    """Merge ``specs`` (validated against the original ``train``, all of one ``batch_kind``)
    given the rows already forgotten."""
    if not specs:
        raise ValueError("a batch needs at least one request")
    kinds = {batch_kind(s.model_dump(exclude_none=True)) for s in specs}
    if len(kinds) > 1:
        raise ValueError("a batch may not mix class requests with row requests")
    gone = np.zeros(len(train), dtype=bool)
    gone[np.asarray(forgotten, dtype=np.int64)] = True
    asked = np.zeros(len(train), dtype=bool)
    for spec in specs:
        asked[spec.resolve(train).numpy()] = True
    new = asked & ~gone
    alive = torch.from_numpy(np.nonzero(~gone)[0])
    rows = np.nonzero(new)[0].tolist()
    already = np.nonzero(asked & gone)[0].tolist()
    if not rows:
        return BatchPlan([], already, alive, None)
    if kinds == {"class"}:
        classes = sorted({c for s in specs for c in s.classes})
        alive_labels = train.y[alive]
        spec = ForgetSpec(classes=[c for c in classes if bool((alive_labels == c).any())])
    else:
        position = np.cumsum(~gone) - 1
        spec = ForgetSpec(indices=position[new].tolist())
    return BatchPlan(rows, already, alive, spec)
