"""Causal-LM commands: forget the facts of some keys in a local Hugging Face model directory,
and evaluate model directories on a JSONL question/answer file."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from obliviate.cli.app import app, console, parse_values
from obliviate.cli.devices import DeviceOpt, resolve_device
from obliviate.extras import MissingExtra

KeysOpt = typer.Option(..., "--keys", help="comma-separated keys whose facts are forgotten")
HoldoutOpt = typer.Option(None, "--holdout-keys", help="comma-separated keys the models never saw (for MIAs)")


def _keys(text: str | None) -> list[str]:
    return [k.strip() for k in (text or "").split(",") if k.strip()]


def _llm():
    """The ``obliviate.llm`` package, or a one-line error naming the missing extra."""
    try:
        import transformers  # noqa: F401

        import obliviate.llm as llm
    except ImportError:
        raise MissingExtra("causal-LM commands need the llm extra: pip install 'obliviate[llm]'") from None
    return llm


@app.command("forget-lm")
def forget_lm(
    model: Path = typer.Option(..., "--model", help="Hugging Face causal-LM directory (with its tokenizer)"),
    data: Path = typer.Option(..., "--data", help="JSONL of question/answer/key facts the model was trained on"),
    keys: str = KeysOpt,
    out: Path = typer.Option(..., "--out", help="new directory for the unlearned model"),
    method: str = typer.Option("npo", help="LM method (see `obliviate methods`, task causal_lm)"),
    option: list[str] = typer.Option(None, "--set", help="method config override key=value"),
    seed: int = typer.Option(0),
    device: str = DeviceOpt,
) -> None:
    """Make a causal LM forget every fact of the given keys; the result goes to a new directory."""
    llm = _llm()
    from obliviate.llm.methods import make_lm_config

    config = parse_values(option)
    make_lm_config(method, **config)
    if out.exists():
        raise ValueError(f"{out} exists; choose a new directory (the original is never overwritten)")
    task = llm.task_from_keys(llm.load_jsonl(data), _keys(keys))
    net, tokenizer = llm.load_causal_lm(model)
    where = resolve_device(device)
    result = llm.unlearn_lm(net, tokenizer, task, method, seed=seed, device=where, progress=True, **config)
    record = {"parent": str(model.resolve()), "data": str(data), "keys": _keys(keys), "run": result.log.to_dict()}
    llm.save_causal_lm(out, result.model, tokenizer, record)
    console.print(
        f"{method}: forgot {len(task.forget)} facts of {len(task.forget_keys)} key(s) in {result.log.seconds:.1f}s "
        f"({result.log.steps} steps) -> {out}"
    )


@app.command("evaluate-lm")
def evaluate_lm_cmd(
    model: list[str] = typer.Option(..., "--model", help="NAME=DIRECTORY, repeat for each model"),
    data: Path = typer.Option(..., "--data", help="JSONL of question/answer/key facts"),
    keys: str = KeysOpt,
    holdout_keys: str = HoldoutOpt,
    reference: str = typer.Option(None, help="name of the retain model among --model (forget quality, privleak)"),
    out: Path = typer.Option(Path("report.json"), help="JSON report to write"),
    device: str = DeviceOpt,
) -> None:
    """Measure model directories on a forget request: forget quality, utility, ROUGE-L, MIAs."""
    llm = _llm()
    from obliviate.atomic import atomic_write_text
    from obliviate.llm.demo import lm_table

    pairs = parse_values(model)
    if reference is not None and reference not in pairs:
        raise ValueError(f"--reference {reference!r} is not among the --model names")
    task = llm.task_from_keys(llm.load_jsonl(data), _keys(keys), _keys(holdout_keys))
    where = resolve_device(device)
    models, tokenizer = {}, None
    for name, path in pairs.items():
        net, tok = llm.load_causal_lm(Path(str(path)))
        models[name] = net.to(where)
        tokenizer = tokenizer or tok
    rows = llm.evaluate_lm(models, tokenizer, task, reference=reference)
    console.print(lm_table(rows, title=f"forgetting {len(task.forget_keys)} key(s)"))
    atomic_write_text(out, json.dumps(rows, indent=2))
    console.print(f"report written to {out}")
