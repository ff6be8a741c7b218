"""The method interface, the registry, and ``unlearn``: the one entry point for every method."""

from __future__ import annotations

import copy
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from pydantic import BaseModel, ConfigDict, ValidationError
from torch import Tensor, nn

from obliviate.adapter import OutputFn, forward, model_device, using_output
from obliviate.data import Batch, Dataset, take
from obliviate.engine import BatchNormPolicy, Engine, Precision
from obliviate.forget import TaskView, UnlearningTask
from obliviate.records import RunLog
from obliviate.training import seed_everything

ALL_KINDS = frozenset({"classification", "regression"})
ALL_SCENARIOS = frozenset({"class", "subclass", "random", "target_range", "time_window", "series"})


class MethodError(ValueError):
    """A method that does not exist, a bad config, or a task the method cannot serve."""


class MethodConfig(BaseModel):
    """Base for method configs: unknown keys are errors, not silently ignored.

    ``scenario_defaults`` holds settings that depend on the kind of forgetting: a field left at
    None takes the value listed for the task's scenario (or under ``"*"`` for any other) before
    the method runs, so the run log records the values used."""

    model_config = ConfigDict(extra="forbid")
    scenario_defaults: ClassVar[dict[str, dict[str, Any]]] = {}

    def for_scenario(self, scenario: str) -> MethodConfig:
        """This config with its None fields filled from ``scenario_defaults``."""
        table = self.scenario_defaults.get(scenario, self.scenario_defaults.get("*", {}))
        return self.model_copy(update={k: v for k, v in table.items() if getattr(self, k) is None})


@dataclass
class RunContext:
    """What a method gets besides the model and data: device, seed, the training engine (steps,
    precision, NaN guard), and ``details``, where a method records what a user needs to read its
    result (copied to the log)."""

    device: torch.device
    seed: int
    generator: torch.Generator
    progress: bool = False
    precision: Precision = "fp32"
    details: dict[str, Any] = field(default_factory=dict)
    watch: Callable[[nn.Module, int], bool] | None = None
    """Called after every optimisation step with the model and the step count; True ends the run
    (``auto`` stops a candidate once its verdict passes or the budget is spent)."""
    stopped: bool = False
    engine: Engine = field(init=False)

    def __post_init__(self) -> None:
        self.engine = Engine(self.device, self.precision, progress=self.progress)

    @property
    def steps(self) -> int:
        """Optimisation steps taken so far (every pass of the method, and any fit it ran)."""
        return self.engine.steps

    @steps.setter
    def steps(self, value: int) -> None:
        self.engine.steps = value

    def optimize(
        self,
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        data: Dataset,
        batch_size: int,
        epochs: int,
        loss_on_batch: Callable[[Batch], Tensor],
        description: str = "unlearn",
        max_steps: int | None = None,
        stop: Callable[[], bool] | None = None,
        batchnorm: BatchNormPolicy = "train",
    ) -> None:
        """Shuffled mini-batch epochs over ``data`` through the engine; ``loss_on_batch(batch)`` gives
        the loss (``batch.x``, ``batch.y``, ``batch.index`` on the device).

        Ends early after ``max_steps`` steps of this pass or once ``stop()`` is true (checked
        after each step), and refuses to continue once the loss is not finite. Once ``watch`` has
        ended the run, later passes of the same run (a method's next phase) do nothing."""
        if self.stopped:
            return

        def should_stop() -> bool:
            if stop is not None and stop():
                return True
            if self.watch is not None and self.watch(model, self.steps):
                self.stopped = True
            return self.stopped

        self.engine.run(
            model,
            optimizer,
            data,
            loss_on_batch,
            epochs=epochs,
            batch_size=batch_size,
            generator=self.generator,
            max_steps=max_steps,
            stop=should_stop,
            batchnorm=batchnorm,
            description=description,
        )


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
    continuous_inputs: ClassVar[bool] = False
    """True for methods that synthesise or attack inputs by gradient (they need float inputs)."""

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
        if cls.continuous_inputs and not task.continuous_inputs:
            raise MethodError(
                f"method {cls.name!r} synthesises or perturbs inputs and needs float inputs; "
                f"this data has {task.split.train.input_dtype or 'dict'} inputs"
            )

    @classmethod
    def check_model(cls, model: nn.Module, task: UnlearningTask) -> None:
        """Refuse models the method cannot work with, before any work starts (default: any model)."""
        return None

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
class UnlearningResult:
    model: nn.Module
    log: RunLog


def check_model_fits(model: nn.Module, task: UnlearningTask, output: OutputFn | None = None) -> None:
    """One forward pass where the model lives, through the model adapter: catches input and
    output-size mismatches (and unreadable outputs) early. The probe is two zero rows of the
    data's input shape and dtype (no row is read, so zero-shot runs stay data-free); for dict
    inputs, two training rows."""
    train, device = task.split.train, model_device(model)
    dtype = train.input_dtype
    if dtype is not None:
        probe = torch.zeros((2, *train.input_shape), dtype=dtype, device=device)
    else:
        probe = take(train, torch.arange(min(2, len(train))), device).x
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            out = forward(model, probe, output)
    except (RuntimeError, TypeError, ValueError, IndexError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise MethodError(f"model does not accept inputs of shape {task.input_shape}: {first}") from None
    finally:
        model.train(was_training)
    if not isinstance(out, Tensor):
        raise MethodError(f"the model's output function returned {type(out).__name__}, not a tensor of logits")
    width = out.shape[-1] if out.ndim > 1 else 1
    if width != task.num_outputs:
        raise MethodError(f"model has {width} outputs but the task needs {task.num_outputs}")


def unlearn(
    model: nn.Module,
    task: UnlearningTask,
    method: str = "finetune",
    *,
    seed: int = 0,
    device: str | torch.device | None = None,
    precision: Precision = "fp32",
    output: OutputFn | None = None,
    progress: bool = False,
    watch: Callable[[nn.Module, int], bool] | None = None,
    **config: Any,
) -> UnlearningResult:
    """Apply ``method`` to a copy of ``model`` so that it forgets ``task``'s forget set.

    The model passed in is never modified. ``config`` overrides the method's defaults
    (see ``obliviate methods``). Runs on ``device`` (default: the model's device) at
    ``precision`` ("fp32", "bf16" or "fp16", through autocast). ``output(out)`` reads logits off
    the model's return value when it is not a tensor, tuple, dict with "logits" or a Hugging
    Face output. Returns the new model and a ``RunLog`` with wall time and optimisation steps.
    ``method="auto"`` searches methods and settings within a time budget and stops on the
    reference-free verdict (``obliviate.auto``). ``watch(model, steps)``, called after every
    optimisation step, ends the run early when it returns True.
    """
    if method == "auto":
        from obliviate.auto import auto_unlearn  # auto runs methods through this function

        return auto_unlearn(model, task, seed=seed, device=device, progress=progress, **config)
    cls = get_method(method)
    cfg = make_config(method, **config).for_scenario(task.spec.scenario)
    cls.check(task)
    cls.check_model(model, task)
    device = torch.device(device) if device is not None else model_device(model)
    check_model_fits(model, task, output)
    working = copy.deepcopy(model).to(device)
    ctx = RunContext(
        device=device, seed=seed, generator=seed_everything(seed), progress=progress, precision=precision, watch=watch
    )
    start = time.perf_counter()
    with using_output(output):
        result = cls(cfg).run(working, task.view(cls.needs), ctx)
    seconds = time.perf_counter() - start
    if any(not torch.isfinite(p).all() for p in result.parameters()):
        raise FloatingPointError(f"method {method!r} produced non-finite weights; try a lower learning rate")
    result.eval()
    log = RunLog(method, cfg.model_dump(mode="json"), seconds, ctx.steps, seed, sorted(cls.needs), ctx.details)
    return UnlearningResult(result, log)
