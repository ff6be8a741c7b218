"""The typer application and the helpers its commands share."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import typer
from rich.console import Console

from obliviate.checkpoint import CheckpointError
from obliviate.data import DataError
from obliviate.forget import ForgetSpec, ForgetSpecError
from obliviate.methods import MethodError
from obliviate.plugins import load_plugins

app = typer.Typer(
    help="Obliviate: make trained models forget data, and prove it.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
console = Console(width=None if sys.stdout.isatty() else 160)  # wide tables in logs and pipes
err_console = Console(stderr=True, soft_wrap=True)  # one-line errors, never wrapped


@app.callback()
def _global_options(
    plugin: list[str] = typer.Option(
        None, "--plugin", help="import this module first: it registers models, methods, metrics (repeat)"
    ),
) -> None:
    """Load plugins (named, and installed under the ``obliviate.plugins`` entry point) before any command."""
    load_plugins(plugin or [])


USER_ERRORS = (
    DataError,
    ForgetSpecError,
    MethodError,
    CheckpointError,
    FileNotFoundError,
    KeyError,
    FloatingPointError,
    ValueError,
)


def parse_values(pairs: list[str] | None) -> dict:
    """``key=value`` options; values are read as JSON when they parse, else kept as strings."""
    out = {}
    for pair in pairs or []:
        if "=" not in pair:
            raise ValueError(f"expected key=value, got {pair!r}")
        key, raw = pair.split("=", 1)
        try:
            out[key] = json.loads(raw)
        except json.JSONDecodeError:
            out[key] = raw
    return out


def _ints(text: str) -> list[int]:
    if text.startswith("@"):
        text = Path(text[1:]).read_text()
    text = text.strip()
    if text.startswith("["):
        return [int(v) for v in json.loads(text)]
    return [int(v) for v in text.replace("\n", ",").split(",") if v.strip()]


def _pair(text: str, cast):
    parts = text.split(":")
    if len(parts) != 2:
        raise ValueError(f"expected A:B, got {text!r}")
    return cast(parts[0]), cast(parts[1])


def build_spec(
    spec: str | None,
    classes: str | None,
    subclass: str | None,
    indices: str | None,
    fraction: float | None,
    target_range: str | None,
    seed: int,
) -> ForgetSpec:
    """A ForgetSpec from ``--spec JSON`` or from exactly one of the selector options."""
    if spec:
        return ForgetSpec.model_validate_json(Path(spec[1:]).read_text() if spec.startswith("@") else spec)
    return ForgetSpec(
        classes=_ints(classes) if classes else None,
        subclass=_pair(subclass, int) if subclass else None,
        indices=_ints(indices) if indices else None,
        fraction=fraction,
        target_range=_pair(target_range, float) if target_range else None,
        seed=seed,
    )


SpecOpt = typer.Option(None, "--spec", help="ForgetSpec as JSON, or @file.json")
ClassesOpt = typer.Option(None, "--classes", help="classes to forget, e.g. 3 or 3,5")
SubclassOpt = typer.Option(None, "--subclass", help="SUPER:SUB sub-class to forget")
IndicesOpt = typer.Option(None, "--indices", help="training rows: 1,2,3 or @file (JSON list or one per line)")
FractionOpt = typer.Option(None, "--fraction", help="forget this random fraction of training rows")
RangeOpt = typer.Option(None, "--target-range", help="LO:HI regression targets to forget")
SpecSeedOpt = typer.Option(0, "--spec-seed", help="seed for --fraction")
