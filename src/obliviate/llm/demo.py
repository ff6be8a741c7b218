"""The LM demo and benchmark run: fine-tune the original and the retain oracle on generated
profiles, unlearn with each method, and measure every model on the same forget request."""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
from rich.table import Table

from obliviate.llm.data import profile_task
from obliviate.llm.methods import make_lm_config, unlearn_lm
from obliviate.llm.metrics import evaluate_lm
from obliviate.llm.model import FinetuneResult, LMTrainConfig, original_and_oracle, tiny_gpt2, train_tokenizer

DEMO_METHODS = ("npo", "graddiff")
RECIPE = LMTrainConfig(epochs=30, lr=3e-3, batch_size=32)
ARCH = {"n_layer": 2, "n_embd": 64, "n_head": 4}
COLUMNS = (
    ("forget_quality", "forget quality", ".2e"),
    ("model_utility", "model utility", ".3f"),
    ("forget_rouge", "forget ROUGE-L", ".3f"),
    ("extraction_strength", "extraction", ".3f"),
    ("mia_min_k", "min-k% AUC", ".3f"),
    ("privleak", "privleak %", ".1f"),
    ("seconds", "seconds", ".1f"),
    ("speedup", "speed-up", ".1f"),
)


@dataclass
class LMRun:
    """Metrics per model (``original``, ``retain`` and each method), plus the setting."""

    rows: dict[str, dict[str, float]]
    setting: dict = field(default_factory=dict)


def run_lm_experiment(
    methods: Sequence[str],
    n_people: int = 100,
    fraction: float = 0.1,
    seed: int = 0,
    overrides: dict[str, dict] | None = None,
    recipe: LMTrainConfig = RECIPE,
    arch: dict | None = None,
    progress: bool = False,
    device: str | torch.device | None = None,
    cache: str | Path | None = None,
) -> LMRun:
    """One seed: the original and the retain oracle (fine-tuned from the same initialisation;
    the oracle's time is the cost of re-fine-tuning), each method on the original, all metrics.

    The seed sets the profiles, the forget split, the initialisation and the methods' randomness.
    Every model is trained, unlearned and measured on ``device`` (default: the CPU).
    ``cache``: a directory where the two fine-tuned models (and their fine-tuning times) are kept
    per setting, so that repeated runs (tuning a method) do not fine-tune them again.
    """
    arch = ARCH if arch is None else arch
    for name in methods:  # refuse unknown methods and bad configs before any fine-tuning
        make_lm_config(name, **(overrides or {}).get(name, {}))
    task = profile_task(fraction, n_people=n_people, seed=seed)
    tokenizer = train_tokenizer(task.corpus())
    recipe = recipe.model_copy(update={"seed": seed})
    original, oracle = _cached_original_and_oracle(
        task, tokenizer, recipe, arch, n_people, fraction, cache, progress, device
    )
    models = {"original": original.model, "retain": oracle.model}
    seconds = {"original": original.seconds, "retain": oracle.seconds}
    epochs_run = {}
    for name in methods:
        result = unlearn_lm(
            original.model, tokenizer, task, name, seed=seed, progress=progress, **(overrides or {}).get(name, {})
        )
        models[name], seconds[name] = result.model, result.log.seconds
        epochs_run[name] = result.log.details["epochs_run"]
    start = time.perf_counter()
    rows = evaluate_lm(models, tokenizer, task, reference="retain", seed=seed)
    for name, row in rows.items():
        row["seconds"] = seconds[name]
        row["speedup"] = oracle.seconds / seconds[name]
    setting = {
        "n_people": n_people,
        "fraction": fraction,
        "seed": seed,
        "forget_facts": len(task.forget),
        "retain_facts": len(task.retain),
        "holdout_facts": len(task.holdout),
        "world_facts": len(task.world),
        "recipe": recipe.model_dump(),
        "arch": arch,
        "overrides": overrides or {},
        "epochs_run": epochs_run,
        "eval_seconds": time.perf_counter() - start,
    }
    return LMRun(rows, setting)


def _cached_original_and_oracle(
    task,
    tokenizer,
    recipe: LMTrainConfig,
    arch: dict,
    n_people: int,
    fraction: float,
    cache,
    progress: bool,
    device: str | torch.device | None,
) -> tuple[FinetuneResult, FinetuneResult]:
    key = json.dumps([recipe.model_dump(), arch, n_people, fraction], sort_keys=True)
    path = Path(cache) / f"llm-{hashlib.sha256(key.encode()).hexdigest()[:16]}.pt" if cache else None
    if path is not None and path.is_file():
        saved = torch.load(path, weights_only=True)
        pair = []
        for name in ("original", "retain"):
            model = tiny_gpt2(tokenizer, seed=recipe.seed, **arch)
            model.load_state_dict(saved[name]["state"])
            model.to(device or "cpu")
            pair.append(FinetuneResult(model.eval(), saved[name]["seconds"], saved[name]["steps"]))
        return pair[0], pair[1]
    original, oracle = original_and_oracle(task, tokenizer, recipe, progress=progress, device=device, **arch)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        saved = {
            name: {"state": r.model.state_dict(), "seconds": r.seconds, "steps": r.steps}
            for name, r in (("original", original), ("retain", oracle))
        }
        torch.save(saved, path.with_suffix(".tmp"))
        path.with_suffix(".tmp").rename(path)
    return original, oracle


def run_llm_demo(
    methods: Sequence[str] | None = None,
    seed: int = 0,
    progress: bool = False,
    device: str | torch.device | None = None,
) -> LMRun:
    """The ``obliviate demo --task llm`` run: 100 profiles, forget 10%, two methods, on ``device``."""
    return run_lm_experiment(methods or DEMO_METHODS, seed=seed, progress=progress, device=device)


def lm_table(rows: dict[str, dict[str, float]], title: str = "forgetting 10% of the profiles") -> Table:
    """A rich table of the headline metrics, one row per model."""
    table = Table(title=title)
    table.add_column("model")
    for _, label, _ in COLUMNS:
        table.add_column(label, justify="right")
    for name, row in rows.items():
        table.add_row(name, *(format(row[key], fmt) if key in row else "-" for key, _, fmt in COLUMNS))
    return table
