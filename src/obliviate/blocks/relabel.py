"""Wrong labels for relabelling methods (amnesiac, random labels, SalUn)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from obliviate.adapter import forward, predict
from obliviate.data import Batch, Dataset, take
from obliviate.engine import OptimizerName, make_optimizer

if TYPE_CHECKING:
    from obliviate.methods.base import RunContext


def random_wrong_labels(y: Tensor, num_classes: int, generator: torch.Generator | None = None) -> Tensor:
    """A label drawn uniformly from the classes other than ``y``'s, for every row."""
    if num_classes < 2:
        raise ValueError("relabelling needs at least two classes")
    shift = torch.randint(1, num_classes, y.shape, generator=generator).to(y.device)
    return (y + shift) % num_classes


WrongLabels = Literal["random", "nearest"]


def nearest_wrong_labels(model: nn.Module, forget: Dataset) -> Tensor:
    """Per row, the model's most likely class other than the row's own label (on the CPU): the
    class a model that never saw the row's class tends to give it."""
    return predict(model, forget).scatter(1, forget.y[:, None].cpu(), float("-inf")).argmax(1)


def relabel_epochs(epochs: int | None, scenario: str) -> int:
    """Epochs over the forget rows: as configured, else 2 for whole classes and 1 otherwise
    (rows that share their class with retained rows are over-forgotten by a second epoch)."""
    if epochs is not None:
        return epochs
    return 2 if scenario == "class" else 1


def random_label_training(
    model: nn.Module,
    forget: Dataset,
    retain: Dataset,
    ctx: RunContext,
    *,
    epochs: int,
    lr: float,
    batch_size: int,
    optimizer: OptimizerName = "sgd",
    retain_weight: float = 1.0,
    retain_ratio: float = 1.0,
    wrong_labels: WrongLabels = "random",
    description: str = "random labels",
) -> None:
    """Epochs over the forget rows with wrong labels, each forget batch paired with a random batch
    of ``retain_ratio`` times as many retain rows that keep their labels. ``random``: a fresh
    uniformly drawn wrong label at every step; ``nearest``: the model's most likely other class
    before training (``nearest_wrong_labels``), fixed per row.

    Loss = CE(forget, wrong labels) + ``retain_weight`` * CE(retain, labels). The cost scales
    with the forget set (times 1 + ``retain_ratio``), not with the retain set.
    """
    num_classes = retain.num_classes
    opt = make_optimizer(model.parameters(), optimizer, lr)
    nearest = nearest_wrong_labels(model, forget).to(ctx.device) if wrong_labels == "nearest" else None

    def loss(b: Batch) -> Tensor:
        wrong = nearest[b.index] if nearest is not None else random_wrong_labels(b.y, num_classes, ctx.generator)
        rows = max(1, round(len(b) * retain_ratio))
        r = take(retain, torch.randint(0, len(retain), (rows,), generator=ctx.generator), ctx.device)
        return F.cross_entropy(forward(model, b.x), wrong) + retain_weight * F.cross_entropy(forward(model, r.x), r.y)

    ctx.optimize(model, opt, forget, batch_size, epochs, loss, description)
