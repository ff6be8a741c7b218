"""``evaluate``: every applicable metric for every model, beside the reference and the gap to it."""

from __future__ import annotations

import math

import torch
from torch import nn

from obliviate.adapter import OutputFn, using_output
from obliviate.forget import UnlearningTask
from obliviate.metrics import METRICS, VIEW_NAMES, MetricContext
from obliviate.records import ModelResult, Report, RunLog
from obliviate.training import predict
from obliviate.verification import VerifyConfig, verdict_from_outputs

AVG_GAP_METRICS = ("forget_acc", "retain_acc", "test_acc", "mia_entropy")
"""DESIGN section 5: Avg Gap is the mean gap over these (percent points)."""


def model_outputs(
    model: nn.Module, task: UnlearningTask, device: str | torch.device | None = None
) -> dict[str, torch.Tensor]:
    """Outputs on every view from two passes (train and test), batch by batch through the loader,
    sliced per view; the model runs where it lives unless ``device`` is given."""
    train_out = predict(model, task.train, device=device)
    test_out = predict(model, task.test, device=device)
    return {
        "forget": train_out[task.forget_idx],
        "retain": train_out[task.retain_idx],
        "test": test_out,
        "forget_test": test_out[task.forget_test_idx],
        "retain_test": test_out[task.retain_test_idx],
    }


def _flatten(name: str, value) -> dict[str, float]:
    if value is None:
        return {}
    if isinstance(value, dict):
        return {f"{name}.{k}": float(v) for k, v in value.items()}
    return {name: float(value)}


def evaluate(
    task: UnlearningTask,
    models: dict[str, nn.Module],
    *,
    reference: str | None = None,
    original: str | None = "original",
    logs: dict[str, RunLog] | None = None,
    metrics: list[str] | None = None,
    seed: int = 0,
    device: str | torch.device | None = None,
    options: dict[str, dict] | None = None,
    verify: VerifyConfig | None = None,
    output: OutputFn | None = None,
) -> Report:
    """Evaluate ``models`` on ``task``; gaps and speed-ups are taken against ``reference``.

    ``reference`` names the retrained model; by default the model named ``retrain`` if there is
    one, else none: then no gaps are computed and the reference-free verdicts
    (``obliviate.verify``, thresholds from ``verify``) are what the report offers. Verdicts are
    attached for every model in either case, against ``original`` when it is among the models.

    ``metrics`` names the metrics to compute (default: every default metric that applies to
    the task kind). ``logs`` (from ``unlearn``) supply wall time and steps; the speed-up is
    the reference's time divided by each model's, so both must come from the same run.
    ``options`` passes settings to metrics by name (e.g. ``{"lira": {"shadow_models": 16}}``).
    Each model runs where it lives (``device`` moves them all there); ``output`` reads logits off
    models whose outputs the adapter does not know (see ``obliviate.adapter``).
    """
    if reference is None and "retrain" in models:
        reference = "retrain"
    if reference is not None and reference not in models:
        raise KeyError(f"reference {reference!r} is not among the models {list(models)}")
    names = metrics if metrics is not None else [n for n, m in METRICS.items() if m.default]
    unknown = [n for n in names if n not in METRICS]
    if unknown:
        raise KeyError(f"unknown metrics {unknown}; known: {sorted(METRICS)}")
    selected = [METRICS[n] for n in names if task.kind in METRICS[n].kinds]
    with using_output(output):
        return _evaluate(task, models, reference, original, logs, selected, seed, device, options, verify)


def _evaluate(task, models, reference, original, logs, selected, seed, device, options, verify) -> Report:
    outputs = {name: model_outputs(m, task, device) for name, m in models.items()}
    logs = logs or {}
    results: dict[str, ModelResult] = {}
    directions: dict[str, str] = {}
    for name, model in models.items():
        ctx = MetricContext(
            task=task,
            name=name,
            model=model,
            outputs=outputs[name],
            original=outputs.get(original) if original else None,
            reference=outputs.get(reference) if reference else None,
            original_model=models.get(original) if original else None,
            reference_model=models.get(reference) if reference else None,
            seed=seed,
            device=torch.device(device) if device is not None else None,
            options=options or {},
        )
        values: dict[str, float] = {}
        for info in selected:
            flat = _flatten(info.name, info.fn(ctx))
            values.update(flat)
            directions.update({k: info.direction for k in flat})
        log = logs.get(name)
        results[name] = ModelResult(values, seconds=log.seconds if log else None, steps=log.steps if log else None)
    if reference is not None:
        ref = results[reference]
        for res in results.values():
            res.gaps = {
                k: abs(v - ref.metrics[k])
                for k, v in res.metrics.items()
                if directions.get(k) == "reference"
                and k in ref.metrics
                and not (math.isnan(v) or math.isnan(ref.metrics[k]))
            }
            parts = [res.gaps[k] for k in AVG_GAP_METRICS if k in res.gaps]
            res.avg_gap = sum(parts) / len(parts) if parts else None
            if ref.seconds and res.seconds:
                res.speedup = ref.seconds / res.seconds
    verdicts = {
        name: verdict_from_outputs(task, out, outputs.get(original) if original else None, verify, seed).to_dict()
        for name, out in outputs.items()
    }
    task_info = {
        "dataset": task.train.name,
        "kind": task.kind,
        "spec": task.spec.model_dump(exclude_none=True),
        "scenario": task.spec.scenario,
        "forget_keys": task.forget_keys,
        "previously_forgotten": task.prior.model_dump(),
        "sizes": {v: len(getattr(task, v)) for v in VIEW_NAMES},
    }
    return Report(task_info, reference, results, directions, verdicts)
