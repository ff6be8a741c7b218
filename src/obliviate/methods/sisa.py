"""SISA exact unlearning (Bourtoule et al., 2021): Sharded, Isolated, Sliced, Aggregated training,
and the registered method ``sisa`` that forgets by retraining only the affected shards.

The training rows are split into ``shards`` disjoint shards, each shard into ``slices``
slices. One constituent model per shard is trained incrementally: stage ``j`` continues
from stage ``j-1`` on slices ``0..j`` and its weights are kept as a checkpoint. Forgetting
a row retrains only the shard that held it, starting from the checkpoint taken *before*
the row's slice was first seen, so the result is exactly a model never trained on it.
Predictions aggregate the shards (mean of softmax outputs, or majority vote).

Each stage trains ``round(2E / (slices + 1))`` epochs (E = the recipe's epochs): the
paper's schedule, under which a sliced shard costs the same number of sample passes as
E epochs on the whole shard.

The ensemble is an ordinary ``nn.Module`` registered as architecture ``"sisa"``: its
checkpoints and its row assignment are part of its state, so a single safetensors file
holds everything needed to forget the next row, and saving is as atomic as any model.
"""

from __future__ import annotations

import copy
import math
from typing import Literal

import torch
from pydantic import Field
from torch import Tensor, nn

from obliviate.adapter import forward
from obliviate.data import Dataset
from obliviate.forget import TaskView
from obliviate.methods.base import Method, MethodConfig, MethodError, RunContext, register
from obliviate.models import build_model, fresh_copy, register_architecture
from obliviate.training import TrainConfig, fit

REMOVED = -1


class SISAEnsemble(nn.Module):
    """``stages[s][j]`` is shard ``s`` after slice ``j``; ``assignment[i] = s * slices + j`` for row ``i``."""

    def __init__(
        self,
        input_shape: tuple[int, ...],
        num_outputs: int,
        base: str = "mlp",
        base_kwargs: dict | None = None,
        shards: int = 4,
        slices: int = 4,
        aggregation: str = "mean",
        recipe: dict | None = None,
    ):
        super().__init__()
        if aggregation not in {"mean", "vote"}:
            raise ValueError(f"aggregation must be 'mean' or 'vote', not {aggregation!r}")
        if shards < 1 or slices < 1:
            raise ValueError("SISA needs at least one shard and one slice")
        self.shards, self.slices, self.aggregation = shards, slices, aggregation
        self.recipe = TrainConfig(**(recipe or {}))
        self.stages = nn.ModuleList(
            nn.ModuleList(build_model(base, input_shape, num_outputs, **(base_kwargs or {})) for _ in range(slices))
            for _ in range(shards)
        )
        self.register_buffer("assignment", torch.zeros(0, dtype=torch.long))

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        # The number of rows is data, not architecture: size the buffer from the file.
        key = prefix + "assignment"
        if key in state_dict:
            self.assignment = torch.empty_like(state_dict[key])
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def shard_sizes(self) -> Tensor:
        kept = self.assignment[self.assignment != REMOVED]
        return torch.bincount(kept // self.slices, minlength=self.shards)

    def members(self) -> list[nn.Module]:
        """The final stage of every shard that still holds rows."""
        sizes = self.shard_sizes()
        return [self.stages[s][-1] for s in range(self.shards) if sizes[s] > 0]

    def forward(self, x: Tensor) -> Tensor:
        """Log of the aggregated class probabilities (so softmax of the output is the ensemble's vote)."""
        outs = torch.stack([forward(m, x) for m in self.members()])
        if self.aggregation == "mean":
            probs = outs.softmax(-1).mean(0)
        else:
            votes = nn.functional.one_hot(outs.argmax(-1), outs.shape[-1]).float()
            probs = votes.mean(0)
        return probs.clamp_min(1e-12).log()

    def stage_recipe(self, shard: int, stage: int, seed: int) -> TrainConfig:
        epochs = max(1, round(2 * self.recipe.epochs / (self.slices + 1)))
        return self.recipe.model_copy(update={"epochs": epochs, "seed": seed + shard * self.slices + stage})

    def retrain_shard(self, shard: int, start: int, data: Dataset, seed: int, device: str | torch.device) -> int:
        """Retrain ``shard`` from the checkpoint before slice ``start``; returns optimiser steps."""
        if start == 0:
            model = fresh_copy(self.stages[shard][0], seed=seed + shard)
        else:
            model = copy.deepcopy(self.stages[shard][start - 1])
        first, steps = shard * self.slices, 0
        for j in range(start, self.slices):
            rows = torch.nonzero((self.assignment >= first) & (self.assignment <= first + j)).flatten()
            if len(rows):
                steps += fit(model, data.subset(rows), self.stage_recipe(shard, j, seed), device=device).steps
            self.stages[shard][j].load_state_dict(model.state_dict())
        return steps

    def forget(self, data: Dataset, mask: Tensor, seed: int = 0, device: str | torch.device = "cpu") -> dict:
        """Remove the rows where ``mask`` is true (rows of ``data``, the set the ensemble holds).

        Afterwards the assignment covers only the kept rows, in order, so the next request
        refers to ``data`` without the forgotten rows. Returns which shards were retrained,
        from which slice, and the optimiser steps spent.
        """
        if len(data) != len(self.assignment):
            raise ValueError(
                f"the SISA ensemble holds {len(self.assignment)} rows but the task's training set has {len(data)}"
            )
        mask = mask.to(self.assignment.device)
        codes = self.assignment[mask]
        if (codes == REMOVED).any():
            raise ValueError("some rows to forget were already removed from the SISA ensemble")
        retrain = {}
        for shard in torch.unique(codes // self.slices).tolist():
            retrain[shard] = int((codes[codes // self.slices == shard] % self.slices).min())
        self.assignment[mask] = REMOVED
        steps = sum(self.retrain_shard(s, j, data, seed, device) for s, j in sorted(retrain.items()))
        self.assignment = self.assignment[~mask].clone()
        return {"retrained": retrain, "steps": steps}


register_architecture("sisa", SISAEnsemble)


def train_sisa(
    template: nn.Module,
    data: Dataset,
    shards: int = 4,
    slices: int = 4,
    recipe: TrainConfig | None = None,
    aggregation: str = "mean",
    seed: int = 0,
    device: str | torch.device = "cpu",
) -> tuple[SISAEnsemble, int]:
    """Train a SISA ensemble of ``template``'s architecture on ``data``; returns it and the steps spent."""
    spec = getattr(template, "obliviate_spec", None)
    if spec is None:
        raise ValueError("SISA rebuilds the constituent models by name: use a model made by build_model")
    if data.kind != "classification":
        raise ValueError("SISA aggregates class probabilities; it needs a classification data set")
    if len(data) < shards * slices:
        raise ValueError(f"{len(data)} rows cannot fill {shards} shards x {slices} slices")
    recipe = recipe or TrainConfig()
    ensemble = build_model(
        "sisa",
        tuple(spec["input_shape"]),
        spec["num_outputs"],
        base=spec["architecture"],
        base_kwargs=spec.get("kwargs", {}),
        shards=shards,
        slices=slices,
        aggregation=aggregation,
        recipe=recipe.model_dump(mode="json"),
    )
    order = torch.randperm(len(data), generator=torch.Generator().manual_seed(seed))
    position = torch.arange(len(data))
    codes = torch.empty(len(data), dtype=torch.long)
    # Round-robin over shards, then consecutive blocks of each shard's rows into slices.
    per_shard = math.ceil(len(data) / shards)
    slice_len = math.ceil(per_shard / slices)
    codes[order] = (position % shards) * slices + torch.clamp((position // shards) // slice_len, max=slices - 1)
    ensemble.assignment = codes
    steps = sum(ensemble.retrain_shard(s, 0, data, seed, device) for s in range(shards))
    ensemble.to(device).eval()
    return ensemble, steps


class SisaConfig(MethodConfig):
    """Used only when the model given is not yet a SISA ensemble (then one is trained from scratch
    on the kept rows); an existing ensemble is retrained with the recipe it was trained with."""

    shards: int = Field(4, ge=1)
    slices: int = Field(4, ge=1)
    aggregation: Literal["mean", "vote"] = "mean"
    recipe: TrainConfig = Field(default_factory=TrainConfig)


@register
class Sisa(Method):
    """SISA: retrain only the shards holding forgotten rows, from the checkpoint before their slice."""

    name = "sisa"
    config_class = SisaConfig
    needs = frozenset({"train", "forget"})
    kinds = frozenset({"classification"})

    @classmethod
    def check_model(cls, model: nn.Module, task) -> None:
        if not isinstance(model, SISAEnsemble) and getattr(model, "obliviate_spec", None) is None:
            raise MethodError(
                "sisa rebuilds its shard models by name: use a SISA ensemble or a model made by build_model"
            )

    def run(self, model: nn.Module, data: TaskView, ctx: RunContext) -> nn.Module:
        mask = data.train_forget_mask
        if isinstance(model, SISAEnsemble):
            try:
                ctx.steps += model.forget(data.train, mask, seed=ctx.seed, device=ctx.device)["steps"]
            except ValueError as exc:
                raise MethodError(f"sisa: {exc}") from None
            return model
        cfg = self.config
        kept = data.train.subset(torch.nonzero(~mask).flatten())
        ensemble, steps = train_sisa(
            model, kept, cfg.shards, cfg.slices, cfg.recipe.model_copy(update={"seed": ctx.seed}),
            cfg.aggregation, seed=ctx.seed, device=ctx.device,
        )  # fmt: skip
        ctx.steps += steps
        return ensemble
