"""Fine-tuning on the retained rows: relies on catastrophic forgetting of what is not rehearsed."""

from __future__ import annotations

from pydantic import Field
from torch import nn

from obliviate.adapter import forward
from obliviate.engine import OptimizerName, make_optimizer
from obliviate.forget import TaskView
from obliviate.methods.base import Method, MethodConfig, RunContext, register
from obliviate.training import unit_loss


class FinetuneConfig(MethodConfig):
    epochs: int = Field(5, ge=1)
    lr: float = Field(0.02, gt=0)
    optimizer: OptimizerName = "sgd"
    batch_size: int = Field(64, ge=1)


@register
class Finetune(Method):
    """Continue training the model on the retain set for a few epochs at a raised learning rate."""

    name = "finetune"
    config_class = FinetuneConfig
    needs = frozenset({"retain"})

    def run(self, model: nn.Module, data: TaskView, ctx: RunContext) -> nn.Module:
        cfg = self.config
        retain = data.retain
        loss_fn = unit_loss(data.kind, retain.y)
        opt = make_optimizer(model.parameters(), cfg.optimizer, cfg.lr)
        ctx.optimize(
            model, opt, retain, cfg.batch_size, cfg.epochs, lambda b: loss_fn(forward(model, b.x), b.y), "finetune"
        )
        return model
