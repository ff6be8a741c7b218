"""Gradient ascent (NegGrad): push the loss on the forget rows up."""

from __future__ import annotations

from pydantic import Field
from torch import nn

from obliviate.adapter import forward
from obliviate.engine import OptimizerName, make_optimizer
from obliviate.forget import TaskView
from obliviate.methods.base import Method, MethodConfig, RunContext, register
from obliviate.training import accuracy, predict, unit_loss


class GradientAscentConfig(MethodConfig):
    """Plain ascent has no natural end and soon destroys the whole model (on digits, 5 epochs
    at lr 0.01 take every class to chance), so by default it stops as soon as forget-set
    accuracy falls to ``stop_accuracy``. For random-row forgetting set it near test accuracy.
    Even so it costs retained accuracy: forgetting digit 3 took retained-class test accuracy
    from about 98% to 85-89% over lr 5e-4..2e-3 and batch 16..64 on three trained CNNs.
    Regression has no accuracy to watch: there it stops once the forget-set loss has grown to
    ``stop_loss_factor`` times its starting value."""

    epochs: int = Field(40, ge=1)
    lr: float = Field(1e-3, gt=0)
    optimizer: OptimizerName = "sgd"
    batch_size: int = Field(32, ge=1)
    max_steps: int | None = Field(None, ge=1, description="stop after this many ascent steps")
    stop_accuracy: float | None = Field(1.0, ge=0, le=100, description="stop once forget accuracy (%) is at most this")
    stop_loss_factor: float | None = Field(2.0, gt=1, description="regression: stop once forget loss is this x start")


@register
class GradientAscent(Method):
    """Ascend the task loss on the forget set, stopping once forget accuracy has fallen."""

    name = "gradient_ascent"
    config_class = GradientAscentConfig
    needs = frozenset({"forget"})

    def run(self, model: nn.Module, data: TaskView, ctx: RunContext) -> nn.Module:
        cfg = self.config
        forget = data.forget
        loss_fn = unit_loss(data.kind, forget.y)
        opt = make_optimizer(model.parameters(), cfg.optimizer, cfg.lr)
        stop = None
        if cfg.stop_accuracy is not None and data.kind == "classification":

            def stop() -> bool:
                return accuracy(model, forget) <= cfg.stop_accuracy

        elif cfg.stop_loss_factor is not None and data.kind == "regression":
            limit = cfg.stop_loss_factor * float(loss_fn(predict(model, forget), forget.y))

            def stop() -> bool:
                return float(loss_fn(predict(model, forget), forget.y)) >= limit

        ctx.optimize(
            model,
            opt,
            forget,
            cfg.batch_size,
            cfg.epochs,
            lambda b: -loss_fn(forward(model, b.x), b.y),
            "gradient ascent",
            cfg.max_steps,
            stop,
        )
        return model
