"""The method interface, the registry, and ``unlearn``: the one entry point for every method."""

from __future__ import annotations

import copy
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any, ClassVar

import torch
from pydantic import BaseModel, ConfigDict, ValidationError
from torch import Tensor, nn

from obliviate.forget import TaskView, UnlearningTask
from obliviate.progress import Progress
from obliviate.training import batches, seed_everything

ALL_KINDS = frozenset({"classification", "regression"})
ALL_SCENARIOS = frozenset({"class", "subclass", "random", "target_range", "time_window", "series"})


class MethodError(ValueError):
    """A method that does not exist, a bad config, or a task the method cannot serve."""


class MethodConfig(BaseModel):
    """Base for method configs: unknown keys are errors, not silently ignored."""

    model_config = ConfigDict(extra="forbid")


@dataclass
class RunContext:
    """What a method gets besides the model and data: device, seed, the step counter, and
    ``details``, where a method records what a user needs to read its result (copied to the log)."""

    device: torch.device
    seed: int
    generator: torch.Generator
    progress: bool = False
    steps: int = 0
    details: dict[str, Any] = field(default_factory=dict)
    watch: Callable[[nn.Module, int], bool] | None = None
    """Called after every optimisation step with the model and the step count; True ends the run
    (``auto`` stops a candidate once its verdict passes or the budget is spent)."""
    stopped: bool = False

    def optimize(
        self,
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        n: int,
        batch_size: int,
        epochs: int,
        loss_on_batch: Callable[[Tensor], Tensor],
        description: str = "unlearn",
        max_steps: int | None = None,
        stop: Callable[[], bool] | None = None,
    ) -> None:
        """Shuffled mini-batch loop over ``n`` in-memory rows; ``loss_on_batch(idx)`` gives the loss.

        Counts optimisation steps, ends early after ``max_steps`` or once ``stop()`` is true
        (checked after each step), and refuses to continue once the loss is not finite. Once
        ``watch`` has ended the run, later loops of the same run (a method's next phase) do nothing.
        """
        if self.stopped:
            return
        model.train()
        with Progress(description, total=epochs * -(-n // batch_size), enabled=self.progress) as bar:
            for epoch in range(epochs):
                for idx in batches(n, batch_size, self.generator):
                    loss = loss_on_batch(idx.to(self.device))
                    if not torch.isfinite(loss):
                        raise FloatingPointError(f"{description}: loss became {loss.item()} at epoch {epoch}")
                    optimizer.zero_grad(set_to_none=True)
                    loss.backward()
                    optimizer.step()
                    self.steps += 1
                    bar.advance()
                    if (max_steps is not None and self.steps >= max_steps) or (stop is not None and stop()):
                        return
                    if self.watch is not None and self.watch(model, self.steps):
                        self.stopped = True
                        return
                bar.note(loss=round(loss.item(), 4))


class Method(ABC):
    """One unlearning method. Subclasses set the class attributes and implement ``run``.

    ``needs`` lists the data views the method reads (``forget``, ``retain``, ``train``,
    ``test``, ``forget_test``); everything else is hidden from it by the task view.
    """

    name: ClassVar[str]
    config_class: ClassVar[type[MethodConfig]] = MethodConfig
    needs: ClassVar[frozenset[str]] = frozenset()
    kinds: ClassVar[frozenset[str]] = ALL_KINDS
    scenarios: ClassVar[frozenset[str]] = ALL_SCENARIOS

    def __init__(self, config: MethodConfig):
        self.config = config

    @classmethod
    def summary(cls) -> str:
        return (cls.__doc__ or "").strip().splitlines()[0] if cls.__doc__ else ""

    @classmethod
    def check(cls, task: UnlearningTask) -> None:
        """Refuse tasks the method is not defined for, before any work starts."""
        if task.kind not in cls.kinds:
            raise MethodError(f"method {cls.name!r} does not support {task.kind} tasks")
        if task.spec.scenario not in cls.scenarios:
            raise MethodError(
                f"method {cls.name!r} serves {sorted(cls.scenarios)} forgetting, not {task.spec.scenario!r}"
            )

    @abstractmethod
    def run(self, model: nn.Module, data: TaskView, ctx: RunContext) -> nn.Module:
        """Return the unlearned model; ``model`` is already a private copy the method may change."""


REGISTRY: dict[str, type[Method]] = {}


def register(cls: type[Method] | None = None, *, replace: bool = False):
    """Class decorator adding a method to the registry under ``cls.name``: ``@register``, or
    ``@register(replace=True)`` to replace a method of that name on purpose (else refused)."""

    def add(cls: type[Method]) -> type[Method]:
        if not replace and REGISTRY.get(cls.name, cls) is not cls:
            raise MethodError(f"method name {cls.name!r} is already registered; use @register(replace=True)")
        REGISTRY[cls.name] = cls
        return cls

    return add if cls is None else add(cls)


def get_method(name: str) -> type[Method]:
    """The registered method ``name``; installed plugins are loaded before giving up on it."""
    if name not in REGISTRY:
        from obliviate.plugins import load_plugins

        load_plugins()
    if name not in REGISTRY:
        raise MethodError(f"unknown method {name!r}; registered: {', '.join(sorted(REGISTRY))}")
    return REGISTRY[name]


def make_config(method: str, **config: Any) -> MethodConfig:
    """Validate ``config`` against the method's pydantic config, with a readable error."""
    cls = get_method(method)
    try:
        return cls.config_class(**config)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        raise MethodError(f"bad config for {method!r}: {problems}") from None


@dataclass
class RunLog:
    """What one unlearning run did and cost."""

    method: str
    config: dict
    seconds: float
    steps: int
    seed: int
    needs: list[str] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class UnlearningResult:
    model: nn.Module
    log: RunLog


def check_model_fits(model: nn.Module, task: UnlearningTask, device: torch.device) -> None:
    """One forward pass on a dummy row: catches input-shape and output-size mismatches early."""
    probe = torch.zeros((2, *task.input_shape), device=device)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            out = model(probe)
    except RuntimeError as exc:
        raise MethodError(f"model does not accept inputs of shape {task.input_shape}: {exc}") from None
    finally:
        model.train(was_training)
    width = out.shape[-1] if out.ndim > 1 else 1
    if width != task.num_outputs:
        raise MethodError(f"model has {width} outputs but the task needs {task.num_outputs}")


def unlearn(
    model: nn.Module,
    task: UnlearningTask,
    method: str = "finetune",
    *,
    seed: int = 0,
    device: str | torch.device = "cpu",
    progress: bool = False,
    watch: Callable[[nn.Module, int], bool] | None = None,
    **config: Any,
) -> UnlearningResult:
    """Apply ``method`` to a copy of ``model`` so that it forgets ``task``'s forget set.

    The model passed in is never modified. ``config`` overrides the method's defaults
    (see ``obliviate methods``). Returns the new model and a ``RunLog`` with wall time
    and optimisation steps. ``method="auto"`` searches methods and settings within a time
    budget and stops on the reference-free verdict (``obliviate.auto``). ``watch(model, steps)``,
    called after every optimisation step, ends the run early when it returns True.
    """
    if method == "auto":
        from obliviate.auto import auto_unlearn  # auto runs methods through this function

        return auto_unlearn(model, task, seed=seed, device=device, progress=progress, **config)
    cls = get_method(method)
    cfg = make_config(method, **config)
    cls.check(task)
    device = torch.device(device)
    check_model_fits(model, task, torch.device("cpu") if next(model.parameters()).device.type == "cpu" else device)
    working = copy.deepcopy(model).to(device)
    ctx = RunContext(device=device, seed=seed, generator=seed_everything(seed), progress=progress, watch=watch)
    start = time.perf_counter()
    result = cls(cfg).run(working, task.view(cls.needs), ctx)
    seconds = time.perf_counter() - start
    if any(not torch.isfinite(p).all() for p in result.parameters()):
        raise FloatingPointError(f"method {method!r} produced non-finite weights; try a lower learning rate")
    result.eval()
    log = RunLog(method, cfg.model_dump(mode="json"), seconds, ctx.steps, seed, sorted(cls.needs), ctx.details)
    return UnlearningResult(result, log)
