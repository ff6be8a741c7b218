"""Causal-LM commands: forget the facts of some keys in a local Hugging Face model directory,
and evaluate model directories on a JSONL question/answer file. ``obliviate forget`` and
``obliviate evaluate`` route here when ``--model`` is a directory (see ``lm_request``)."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from obliviate.cli.app import app, console, parse_values
from obliviate.cli.devices import DeviceOpt, resolve_device
from obliviate.extras import MissingExtra

KeysOpt = typer.Option(..., "--keys", help="comma-separated keys whose facts are forgotten")
HoldoutOpt = typer.Option(
    None, "--holdout-keys", help="comma-separated keys the models never saw (membership attacks, verdict)"
)
ForceOpt = typer.Option(False, "--force", help="write the model even if it fails the utility check")


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


def lm_request(models: list[str | Path], data: str | Path | None) -> bool:
    """True when the main commands are given causal-LM model directories and a JSONL facts file;
    a mixed combination is a one-line error rather than a confusing failure further on."""
    dirs = [Path(str(m)).is_dir() for m in models]
    jsonl = data is not None and str(data).endswith(".jsonl")
    if any(dirs) and not all(dirs):
        raise ValueError("mix of model directories and model files; give causal-LM directories or model files only")
    if any(dirs) and not jsonl:
        raise ValueError("a causal-LM model directory needs --data FILE.jsonl (one question/answer/key per line)")
    if jsonl and not any(dirs):
        raise ValueError("a .jsonl facts file needs --model a Hugging Face causal-LM directory")
    return all(dirs) and bool(dirs)


def run_forget_lm(
    model: Path,
    data: Path,
    keys: list[str],
    out: Path,
    method: str,
    config: dict,
    seed: int = 0,
    holdout_keys: list[str] | None = None,
    force: bool = False,
    device: str = "auto",
) -> None:
    """Unlearn ``keys`` in the model directory, print the reference-free verdict, write ``out``
    (refused, nothing written, when the utility check fails, unless ``force``)."""
    llm = _llm()
    from obliviate.llm.methods import make_lm_config
    from obliviate.llm.verify import verify_lm

    make_lm_config(method, **config)
    if out.exists():
        raise ValueError(f"{out} exists; choose a new directory (the original is never overwritten)")
    task = llm.task_from_keys(llm.load_jsonl(data), keys, holdout_keys or [])
    net, tokenizer = llm.load_causal_lm(model)
    where = resolve_device(device)
    result = llm.unlearn_lm(net, tokenizer, task, method, seed=seed, device=where, progress=True, **config)
    verdict = verify_lm(result.model, tokenizer, task, original=net.to(where), seed=seed)
    console.print(verdict.table(title=f"{method}: verdict {verdict.status.upper()} (score {verdict.score:.2f})"))
    utility = verdict.check("utility")
    if utility is not None and utility.status == "fail" and not force:
        raise ValueError(f"{method} broke the model, nothing written: utility check failed: {utility.reason}")
    record = {
        "parent": str(model.resolve()),
        "data": str(data),
        "keys": keys,
        "run": result.log.to_dict(),
        "verdict": verdict.to_dict(),
    }
    llm.save_causal_lm(out, result.model, tokenizer, record)
    console.print(
        f"{method}: forgot {len(task.forget)} facts of {len(task.forget_keys)} key(s) in {result.log.seconds:.1f}s "
        f"({result.log.steps} steps); verdict {verdict.status}: {verdict.reason} -> {out}"
    )


def run_evaluate_lm(
    pairs: dict,
    data: Path,
    keys: list[str],
    holdout_keys: list[str] | None,
    reference: str | None,
    original: str | None,
    out: Path,
    device: str = "auto",
) -> None:
    """Every metric per model directory, and each model's verdict (against ``original`` when named)."""
    llm = _llm()
    from obliviate.atomic import atomic_write_text
    from obliviate.llm.demo import lm_table
    from obliviate.llm.verify import verify_lm

    if reference is not None and reference not in pairs:
        raise ValueError(f"--reference {reference!r} is not among the --model names")
    task = llm.task_from_keys(llm.load_jsonl(data), keys, holdout_keys or [])
    where = resolve_device(device)
    models, tokenizer = {}, None
    for name, path in pairs.items():
        net, tok = llm.load_causal_lm(Path(str(path)))
        models[name] = net.to(where)
        tokenizer = tokenizer or tok
    rows = llm.evaluate_lm(models, tokenizer, task, reference=reference)
    console.print(lm_table(rows, title=f"forgetting {len(task.forget_keys)} key(s)"))
    before = models.get(original) if original else None
    for name, net in models.items():
        verdict = verify_lm(net, tokenizer, task, original=before if name != original else None)
        rows[name]["verdict"] = verdict.to_dict()
        console.print(f"verdict {name}: {verdict.status} (score {verdict.score:.2f}) · {verdict.reason}")
    atomic_write_text(out, json.dumps(rows, indent=2))
    console.print(f"report written to {out}")


@app.command("forget-lm")
def forget_lm(
    model: Path = typer.Option(..., "--model", help="Hugging Face causal-LM directory (with its tokenizer)"),
    data: Path = typer.Option(..., "--data", help="JSONL of question/answer/key facts the model was trained on"),
    keys: str = KeysOpt,
    out: Path = typer.Option(..., "--out", help="new directory for the unlearned model"),
    method: str = typer.Option("npo", help="LM method (see `obliviate methods`, task causal_lm)"),
    option: list[str] = typer.Option(None, "--set", help="method config override key=value"),
    holdout_keys: str = HoldoutOpt,
    seed: int = typer.Option(0),
    device: str = DeviceOpt,
    force: bool = ForceOpt,
) -> None:
    """Make a causal LM forget every fact of the given keys; the result goes to a new directory."""
    run_forget_lm(model, data, _keys(keys), out, method, parse_values(option), seed, _keys(holdout_keys), force, device)


@app.command("evaluate-lm")
def evaluate_lm_cmd(
    model: list[str] = typer.Option(..., "--model", help="NAME=DIRECTORY, repeat for each model"),
    data: Path = typer.Option(..., "--data", help="JSONL of question/answer/key facts"),
    keys: str = KeysOpt,
    holdout_keys: str = HoldoutOpt,
    reference: str = typer.Option(None, help="name of the retain model among --model (forget quality, privleak)"),
    original: str = typer.Option("original", help="name of the model before unlearning, for the utility check"),
    out: Path = typer.Option(Path("report.json"), help="JSON report to write"),
    device: str = DeviceOpt,
) -> None:
    """Measure model directories on a forget request: forget quality, utility, ROUGE-L, MIAs, verdict."""
    run_evaluate_lm(parse_values(model), data, _keys(keys), _keys(holdout_keys), reference, original, out, device)
