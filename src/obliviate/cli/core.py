"""Core commands: demo, train, forget, evaluate, methods."""

from __future__ import annotations

import time
from functools import reduce
from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.table import Table

from obliviate.cli.app import (
    ClassesOpt,
    FeaturesOpt,
    FractionOpt,
    KeyOpt,
    KeysFileOpt,
    KeysOpt,
    RangeOpt,
    RowsOpt,
    SpecOpt,
    SpecSeedOpt,
    SubclassOpt,
    TargetOpt,
    app,
    build_spec,
    console,
    parse_columns,
    parse_values,
    read_keys,
)
from obliviate.cli.devices import DeviceOpt, resolve_device
from obliviate.cli.llm import lm_request

HoldoutKeysOpt = typer.Option(
    None, "--holdout-keys", help="causal LM: comma-separated keys the model never saw (for the verdict)"
)

if TYPE_CHECKING:
    from obliviate.data import DataSplit
    from obliviate.forget import Forgotten

# Commands import the library inside their bodies, so that `obliviate --help` starts without torch.


@app.command()
def demo(
    data: str = typer.Option("digits", help="bundled data set or path"),
    model: str = typer.Option("cnn", help="architecture"),
    forget_class: int = typer.Option(3, "--forget-class", help="class to forget"),
    methods: str = typer.Option(None, help="comma-separated methods beside retrain [default: the task's own]"),
    seed: int = typer.Option(0),
    out: Path = typer.Option(Path("report.json"), help="where to write the JSON report"),
    task: str = typer.Option(
        "classification",
        help="classification, regression (Wage, forget ages 18-30), forecasting (elecdemand) "
        "or llm (tiny GPT-2 on generated profiles, forget 10%)",
    ),
    device: str = DeviceOpt,
) -> None:
    """Train on bundled data, forget one class with several methods, compare with retraining."""
    from obliviate.demos import run_demo
    from obliviate.display import report_table
    from obliviate.forget import ForgetSpec

    start = time.perf_counter()
    where = resolve_device(device)
    names = [m for m in methods.split(",") if m] if methods else None
    if task == "llm":
        _llm_demo(names, seed, out, start, where)
        return
    if task == "classification":
        spec = ForgetSpec(classes=[forget_class])
        default = ["auto", "bad_teacher"]
        result = run_demo(data, model, spec, names or default, seed=seed, progress=True, device=where)
    else:
        from obliviate.demos import run_regression_demo

        result = run_regression_demo(task, names, seed=seed, progress=True, device=where)
    console.print(report_table(result.report))
    for note in getattr(result, "notes", []):
        console.print(note)
    result.report.save(out)
    console.print(
        f"original trained in {result.train_seconds:.1f}s · total {time.perf_counter() - start:.1f}s · "
        f"report written to {out}"
    )


def _llm_demo(names: list[str] | None, seed: int, out: Path, start: float, device) -> None:
    import json

    from obliviate.atomic import atomic_write_text
    from obliviate.llm.demo import lm_table, run_llm_demo

    run = run_llm_demo(names, seed=seed, progress=True, device=device)
    console.print(lm_table(run.rows))
    atomic_write_text(out, json.dumps({"rows": run.rows, "setting": run.setting}, indent=2))
    console.print(f"total {time.perf_counter() - start:.1f}s · report written to {out}")


@app.command()
def train(
    out: Path = typer.Option(..., "--out", help="model file to write (.safetensors)"),
    data: str = typer.Option("digits", help="bundled data set or path"),
    target: str = TargetOpt,
    key: str = KeyOpt,
    features: str = FeaturesOpt,
    kind: str = typer.Option("classification", help="classification or regression (for .npz/.csv)"),
    model: str = typer.Option("cnn", help="architecture name, or a factory 'package.module:function'"),
    seed: int = typer.Option(0),
    option: list[str] = typer.Option(None, "--set", help="training recipe override key=value"),
    device: str = DeviceOpt,
) -> None:
    """Train a model and save it with a card recording data and recipe."""
    from obliviate.checkpoint import save_model
    from obliviate.data import load_data
    from obliviate.models import build_model
    from obliviate.training import TrainConfig, fit

    recipe = TrainConfig(**{"seed": seed, **parse_values(option)})
    columns = parse_columns(features)
    split = load_data(data, kind=kind, target=target, key=key, features=columns, seed=seed)
    net = build_model(model, split.train.input_shape, split.train.num_outputs, seed=seed)
    result = fit(net, split.train, recipe, device=resolve_device(device), progress=True)
    card = {
        "data": {
            "source": data,
            "kind": kind,
            "target": target,
            "key": key,
            "features": columns,
            "split_seed": seed,
            "fingerprint": split.train.fingerprint(),
        },
        "recipe": recipe.model_dump(),
        "train_seconds": result.seconds,
        "steps": result.steps,
    }
    save_model(out, result.model, card)
    console.print(f"trained {model} on {data} in {result.seconds:.1f}s ({result.steps} steps) -> {out}")


def _load_split(card: dict, data: str | None, target: str | None, key: str | None, features: str | None) -> DataSplit:
    """The data a model was trained on: its card's source and columns, or the ones given (which must match)."""
    from obliviate.data import load_data

    info = card.get("data", {})
    source = data or info.get("source")
    if source is None:
        raise ValueError("the model card names no data set; pass --data")
    key = key or info.get("key")
    if info.get("key") and key != info["key"]:
        raise ValueError(f"--key {key!r} differs from the key column {info['key']!r} the model was trained with")
    split = load_data(
        source,
        kind=info.get("kind", "classification"),
        target=target or info.get("target"),
        key=key,
        features=parse_columns(features) or info.get("features"),
        seed=info.get("split_seed", 0),
    )
    if info.get("fingerprint") and split.train.fingerprint() != info["fingerprint"]:
        raise ValueError(f"data {source!r} differs from the data the model was trained on (fingerprint mismatch)")
    return split


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def _forgotten(card: dict) -> Forgotten:
    from obliviate.forget import Forgotten

    return Forgotten.model_validate(card.get("forgotten") or {})


@app.command()
def forget(
    model_file: Path = typer.Option(
        ..., "--model", help="trained model (.safetensors with its .json card), or a causal-LM directory"
    ),
    out: Path = typer.Option(..., "--out", help="where to write the unlearned model"),
    method: str = typer.Option(None, help="registered method name (default: finetune; npo for a causal LM)"),
    data: str = typer.Option(None, help="data source (default: the one in the model card)"),
    target: str = TargetOpt,
    key: str = KeyOpt,
    features: str = FeaturesOpt,
    spec: str = SpecOpt,
    classes: str = ClassesOpt,
    subclass: str = SubclassOpt,
    indices: str = RowsOpt,
    keys: str = KeysOpt,
    keys_file: Path = KeysFileOpt,
    fraction: float = FractionOpt,
    target_range: str = RangeOpt,
    spec_seed: int = SpecSeedOpt,
    option: list[str] = typer.Option(None, "--set", help="method config override key=value"),
    seed: int = typer.Option(0),
    device: str = DeviceOpt,
    budget: float = typer.Option(None, help="--method auto: time allowed, as a fraction of retraining [0.2]"),
    force: bool = typer.Option(False, "--force", help="write the model even if it fails the utility check"),
    holdout_keys: str = HoldoutKeysOpt,
) -> None:
    """Apply an unlearning method to a saved model, print the verdict, and save the result beside a
    new card; a model that fails the utility check is refused (exit 2, nothing written) unless --force.

    Rows the model forgot before (listed in its card) stay out of the retain set and out of a
    retrained reference; the new card lists every key and class forgotten so far. A causal-LM
    directory with a JSONL facts file goes to ``forget-lm`` (forget by --keys).
    """
    if lm_request([model_file], data):
        from obliviate.cli.llm import run_forget_lm

        _lm_selectors_only(spec, classes, subclass, indices, fraction, target_range, target, key, features, budget)
        chosen, holdout = _lm_keys(keys, keys_file, holdout_keys)
        run_forget_lm(
            model_file, Path(data), chosen, out, method or "npo", parse_values(option), seed, holdout, force, device
        )
        return
    method = method or "finetune"
    from obliviate.checkpoint import check_output, load_model, save_model
    from obliviate.forget import UnlearningTask, file_rows
    from obliviate.methods import unlearn
    from obliviate.verification import verify

    check_output(out, model_file)
    forget_spec = build_spec(
        spec, classes, subclass, indices, fraction, target_range, spec_seed, read_keys(keys, keys_file)
    )
    model, card = load_model(model_file)
    split = _load_split(card, data, target, key, features)
    forget_spec = file_rows(forget_spec, split)  # --indices are rows of the file
    task = UnlearningTask.build(split, forget_spec, prior=_forgotten(card))
    config = parse_values(option)
    if method in ("retrain", "auto") and "recipe" not in config and "recipe" in card:
        config["recipe"] = card["recipe"]
    if method == "auto":
        if budget is not None:
            config["budget"] = budget
        if "retrain_seconds" not in config and card.get("train_seconds"):
            config["retrain_seconds"] = card["train_seconds"] * len(task.retain) / len(task.train)
    elif budget is not None:
        raise ValueError("--budget applies to --method auto only")
    where = resolve_device(device)
    result = unlearn(model, task, method, seed=seed, device=where, progress=True, **config)
    verdict = verify(result.model, task, original=model.to(where), seed=seed, device=where)
    console.print(verdict.table(title=f"{method}: verdict {verdict.status.upper()} (score {verdict.score:.2f})"))
    utility = verdict.check("utility")
    if utility is not None and utility.status == "fail" and not force:
        raise ValueError(f"{method} broke the model, nothing written: utility check failed: {utility.reason}")
    new_card = {
        "data": card.get("data"),
        "recipe": card.get("recipe"),
        "parent_sha256": card.get("sha256"),
        "forget_spec": forget_spec.model_dump(exclude_none=True),
        "forget_keys": task.forget_keys,
        "forgotten": task.forgotten.model_dump(),
        "run": result.log.to_dict(),
    }
    save_model(out, result.model, new_card)
    keys = _plural(len(task.forget_keys), "key")
    earlier = f"; {len(task.prior_idx)} rows forgotten before kept out" if len(task.prior_idx) else ""
    chosen = f" (chose {result.log.details['chosen']['method']})" if method == "auto" else ""
    console.print(
        f"{method}{chosen}: forgot {len(task.forget)} rows ({keys}) in {result.log.seconds:.2f}s "
        f"({result.log.steps} steps){earlier}; verdict {verdict.status}: {verdict.reason} -> {out}"
    )


@app.command("evaluate")
def evaluate_cmd(
    model: list[str] = typer.Option(..., "--model", help="NAME=PATH, repeat for each model"),
    reference: str = typer.Option(None, help="name of the retrained reference among --model (default: none)"),
    original: str = typer.Option("original", help="name of the model before unlearning, for the utility check"),
    data: str = typer.Option(None, help="data source (default: the first model's card)"),
    target: str = TargetOpt,
    key: str = KeyOpt,
    features: str = FeaturesOpt,
    spec: str = SpecOpt,
    classes: str = ClassesOpt,
    subclass: str = SubclassOpt,
    indices: str = RowsOpt,
    keys: str = KeysOpt,
    keys_file: Path = KeysFileOpt,
    fraction: float = FractionOpt,
    target_range: str = RangeOpt,
    spec_seed: int = SpecSeedOpt,
    cumulative: bool = typer.Option(
        False, "--cumulative", help="forget set = everything the models' cards list as forgotten so far"
    ),
    out: Path = typer.Option(Path("report.json"), help="JSON report to write"),
    device: str = DeviceOpt,
    holdout_keys: str = HoldoutKeysOpt,
) -> None:
    """Evaluate saved models (or causal-LM directories on a JSONL file) on a forget request and
    write a JSON report."""
    pairs = parse_values(model)
    if lm_request(list(pairs.values()), data):
        from obliviate.cli.llm import run_evaluate_lm

        _lm_selectors_only(spec, classes, subclass, indices, fraction, target_range, target, key, features, None)
        if cumulative:
            raise ValueError("--cumulative applies to model files with cards, not to causal-LM directories")
        chosen, holdout = _lm_keys(keys, keys_file, holdout_keys)
        run_evaluate_lm(pairs, Path(data), chosen, holdout, reference, original, out, device)
        return
    from obliviate.checkpoint import load_model
    from obliviate.display import report_table
    from obliviate.evaluation import evaluate
    from obliviate.forget import Forgotten, UnlearningTask, file_rows
    from obliviate.records import RunLog

    selectors = (spec, classes, subclass, indices, keys, keys_file, fraction, target_range)
    if cumulative and any(v is not None for v in selectors):
        raise ValueError("--cumulative takes the forget set from the model cards; give no other forget selector")
    models, cards = {}, {}
    for pair in pairs.items():
        name, path = pair
        models[name], cards[name] = load_model(Path(str(path)))
    card = next(iter(cards.values()))
    split = _load_split(card, data, target, key, features)
    if cumulative:
        task = reduce(Forgotten.union, map(_forgotten, cards.values())).task(split)
    else:
        forget_spec = build_spec(
            spec, classes, subclass, indices, fraction, target_range, spec_seed, read_keys(keys, keys_file)
        )
        task = UnlearningTask.build(split, file_rows(forget_spec, split))
    logs = {}
    for name, card in cards.items():
        if "run" in card:
            logs[name] = RunLog(**card["run"])
    where = resolve_device(device)
    models = {name: m.to(where) for name, m in models.items()}
    if original not in models:
        original = None
    report = evaluate(task, models, reference=reference, original=original, logs=logs, device=where)
    console.print(report_table(report))
    for name, verdict in report.verdicts.items():
        console.print(f"verdict {name}: {verdict['status']} (score {verdict['score']:.2f}) · {verdict['reason']}")
    report.save(out)
    console.print(f"report written to {out}")


def _lm_selectors_only(*given) -> None:
    """Refuse row, class and column options for a causal LM (its facts are chosen by key)."""
    if any(v is not None for v in given):
        raise ValueError(
            "a causal LM forgets by --keys; --spec, --classes, --subclass, --indices, --fraction, --range, "
            "--target, --key, --features and --budget apply to model files only"
        )


def _lm_keys(keys: str | None, keys_file: Path | None, holdout_keys: str | None) -> tuple[list[str], list[str]]:
    """The keys to forget (required) and the never-seen keys (optional) of a causal-LM request."""
    chosen = read_keys(keys, keys_file)
    if not chosen:
        raise ValueError("a causal LM forgets by key: give --keys or --keys-file")
    return chosen, read_keys(holdout_keys, None) or []


@app.command()
def methods() -> None:
    """List the registered unlearning methods with their data needs and default configs."""
    from obliviate.methods import REGISTRY

    table = Table(title="unlearning methods")
    for col in ("name", "reads", "tasks", "scenarios", "defaults", "what it does"):
        table.add_column(col)
    for name, cls in sorted(REGISTRY.items()):
        defaults = ", ".join(f"{k}={v}" for k, v in cls.config_class().model_dump().items() if k != "recipe")
        table.add_row(
            name,
            ",".join(sorted(cls.needs)) or "nothing",
            ",".join(sorted(cls.kinds)),
            ",".join(sorted(cls.scenarios)),
            defaults,
            cls.summary(),
        )
    table.add_row(
        "auto",
        "its candidates' needs + the verdict's views",
        "classification,regression",
        "all",
        "budget=0.2, check_every=10",
        "search methods and settings within a share of retraining time; stop on the verdict",
    )
    for name, cls in sorted(_lm_methods().items()):
        defaults = ", ".join(f"{k}={v}" for k, v in cls.config_class().model_dump().items())
        table.add_row(name, ",".join(sorted(cls.needs)), "causal_lm", "key", defaults, cls.summary())
    console.print(table)


def _lm_methods() -> dict:
    """The causal-LM methods, when the ``llm`` extra is installed."""
    try:
        from obliviate.llm.methods import LM_REGISTRY
    except ImportError:
        return {}
    return LM_REGISTRY
