"""The kinds of job a suite runs; plain functions of picklable inputs, so any executor can run them.

1. ``train_original(seed)``: the model trained on all training rows (cached).
2. ``train_retrain(scenario, seed)``: the reference retrained without the forget rows (cached).
3. ``train_lira_shadow(seed, shadow)``: one LiRA shadow model's scores, when the suite asks for
   ``lira`` (cached; shared by every scenario and method of that seed).
4. ``run_method(scenario, method, seed)``: unlearn, then evaluate it beside the cached models.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from obliviate.atomic import atomic_write
from obliviate.data import DataSplit, load_data
from obliviate.evaluation import evaluate
from obliviate.forget import ForgetSpec, UnlearningTask
from obliviate.methods import get_method, unlearn
from obliviate.metrics.lira import lira_settings, remember_shadows, shadow_members, shadow_pool, train_shadow
from obliviate.models import build_model
from obliviate.records import RunLog
from obliviate.runner.cache import ModelCache, code_version, source_hash
from obliviate.runner.suite import Suite, stable_hash
from obliviate.training import fit, per_example_loss, predict, seed_everything

LOSS_EDGES = np.logspace(-6, 2, 41)
"""Histogram bins (log-spaced) for per-example losses; values outside are clipped into the end bins."""


@dataclass(frozen=True)
class Job:
    suite: Suite
    cache_dir: str
    seed: int
    scenario: str | None = None
    method: str | None = None
    shadow: int | None = None
    device: str = "cpu"
    """Where the job trains and evaluates; not part of any key (it changes speed and rounding only)."""

    @property
    def key(self) -> str:
        """Identity of a method job's result: changes whenever anything that shapes it changes."""
        s = self.suite
        scenario = self._scenario()
        entry = next(m for m in s.methods if m.key == self.method)
        return stable_hash(
            {
                "data": [s.data, s.kind, s.target, s.split_seed],
                "model": [s.architecture, s.model_kwargs],
                "recipe": s.recipe.model_dump(mode="json"),
                "spec": scenario.spec.model_dump(mode="json"),
                "method": entry.model_dump(mode="json"),
                "seed": self.seed,
                "metrics": [s.metrics, s.metric_options],
                "code": [code_version(), source_hash(get_method(entry.name))],
            }
        )

    def _scenario(self):
        return next(sc for sc in self.suite.scenarios if sc.name == self.scenario)


@functools.lru_cache(maxsize=4)
def _split(data: str, kind: str, target: str | None, seed: int) -> DataSplit:
    return load_data(data, kind=kind, target=target, seed=seed)


def _task(job: Job) -> UnlearningTask:
    s = job.suite
    return _cached_task(s.data, s.kind, s.target, s.split_seed, job._scenario().spec.model_dump_json())


@functools.lru_cache(maxsize=16)
def _cached_task(data: str, kind: str, target: str | None, split_seed: int, spec_json: str) -> UnlearningTask:
    """One task object per scenario in a process, so per-task caches (LiRA's shadows) are shared."""
    return UnlearningTask.build(_split(data, kind, target, split_seed), ForgetSpec.model_validate_json(spec_json))


def _original(job: Job) -> tuple[nn.Module, dict]:
    s = job.suite
    split = _split(s.data, s.kind, s.target, s.split_seed)
    recipe = s.recipe.model_copy(update={"seed": job.seed})
    identity = _json(
        {
            "data": split.train.fingerprint(),
            "model": [s.architecture, s.model_kwargs],
            "recipe": recipe.model_dump(mode="json"),
        }
    )

    def make():
        seed_everything(job.seed)  # the initial weights, not only the batches, must follow the seed
        net = build_model(s.architecture, split.train.input_shape, split.train.num_outputs, **s.model_kwargs)
        result = fit(net, split.train, recipe, device=job.device)
        return result.model, {"train_seconds": result.seconds, "steps": result.steps}

    return ModelCache(job.cache_dir).get_or_make("original", identity, make)


def _retrain(job: Job) -> tuple[nn.Module, dict]:
    original, card = _original(job)
    task = _task(job)
    recipe = job.suite.recipe.model_copy(update={"seed": job.seed})
    identity = _json({"original": card["identity"], "spec": task.spec.model_dump(mode="json")})

    def make():
        result = unlearn(original, task, "retrain", seed=job.seed, device=job.device, recipe=recipe)
        return result.model, {"run": result.log.to_dict()}

    return ModelCache(job.cache_dir).get_or_make("retrain", identity, make)


def _json(obj: dict) -> dict:
    return json.loads(json.dumps(obj, sort_keys=True, default=str))


def metric_options(suite: Suite) -> dict:
    """The suite's metric options; LiRA's shadows train with the suite recipe unless told otherwise."""
    options = {**suite.metric_options}
    options["lira"] = {"recipe": suite.recipe.model_dump(mode="json"), **options.get("lira", {})}
    return options


def train_lira_shadow(job: Job) -> np.ndarray:
    """Scores of LiRA shadow ``job.shadow`` of ``job.seed`` on the whole pool, from the cache or
    trained (and cached) now."""
    s = job.suite
    split = _split(s.data, s.kind, s.target, s.split_seed)
    k, recipe = lira_settings(metric_options(s))
    identity = _json(
        {
            "data": [split.train.fingerprint(), split.test.fingerprint()],
            "model": [s.architecture, s.model_kwargs],
            "recipe": recipe.model_dump(mode="json"),
            "shadows": k,
            "seed": job.seed,
            "index": job.shadow,
            "code": code_version(),
        }
    )
    path = Path(job.cache_dir) / f"lira-shadow-{stable_hash(identity)}.npy"
    if path.exists():
        try:
            scores = np.load(path, allow_pickle=False)
            if scores.shape == (len(split.train) + len(split.test),):
                return scores
        except (OSError, ValueError):
            pass  # a corrupt entry is retrained, not trusted
    pool = shadow_pool(split.train, split.test)
    template, _ = _original(job)  # only its architecture matters: the shadow is re-initialised
    members = shadow_members(len(pool), k, job.seed)
    scores = train_shadow(template, pool, members, recipe, job.seed, job.shadow, job.device)

    def write(tmp: Path) -> None:
        with tmp.open("wb") as fh:  # a file object: np.save would add ".npy" to a path
            np.save(fh, scores)

    atomic_write(path, write)
    return scores


def train_original(job: Job) -> str:
    """Make sure the original for ``job.seed`` is in the cache; returns its weights' sha256."""
    return _original(job)[1]["sha256"]


def train_retrain(job: Job) -> str:
    return _retrain(job)[1]["sha256"]


def _per_class_accuracy(outputs: torch.Tensor, y: torch.Tensor, num_classes: int) -> list[float]:
    hits = torch.bincount(y[outputs.argmax(1) == y], minlength=num_classes).double()
    totals = torch.bincount(y, minlength=num_classes).double()
    return (hits / totals.clamp(min=1) * 100).masked_fill(totals == 0, float("nan")).tolist()


def _loss_histogram(model: nn.Module, task: UnlearningTask, view: str, device: str) -> list[int]:
    data = getattr(task, view)
    loss = per_example_loss(predict(model, data, device=device), data.y, task.kind).numpy()
    clipped = np.clip(loss, LOSS_EDGES[0], LOSS_EDGES[-1])
    return np.histogram(clipped, LOSS_EDGES)[0].tolist()


def run_method(job: Job) -> dict:
    """Unlearn with one method and evaluate it beside the cached original and retrained models."""
    s = job.suite
    task = _task(job)
    original, _ = _original(job)
    retrained, retrain_card = _retrain(job)
    original, retrained = original.to(job.device), retrained.to(job.device)
    entry = next(m for m in s.methods if m.key == job.method)
    result = unlearn(original, task, entry.name, seed=job.seed, device=job.device, **entry.config)
    models = {"original": original, "retrain": retrained, entry.key: result.model}
    logs = {"retrain": RunLog(**retrain_card["run"]), entry.key: result.log}
    options = metric_options(s)
    if s.uses_lira:
        k, recipe = lira_settings(options)
        shadows = [train_lira_shadow(Job(s, job.cache_dir, job.seed, shadow=i, device=job.device)) for i in range(k)]
        remember_shadows(task, original, k, recipe, job.seed, np.stack(shadows))
    report = evaluate(task, models, logs=logs, metrics=s.metrics, seed=job.seed, options=options, device=job.device)
    record = {
        "key": job.key,
        "scenario": job.scenario,
        "method": entry.key,
        "seed": job.seed,
        "report": report.to_dict(),
        "loss_hist": {
            name: {v: _loss_histogram(m, task, v, job.device) for v in ("forget", "test")} for name, m in models.items()
        },
    }
    if task.kind == "classification":
        record["per_class_test_acc"] = {
            name: _per_class_accuracy(predict(m, task.test, device=job.device), task.test.y, task.num_classes)
            for name, m in models.items()
        }
    return record
