"""The typer application and the helpers its commands share."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.console import Console

from obliviate.tables import FORMATS, TableConsole

if TYPE_CHECKING:
    from obliviate.forget import ForgetSpec

app = typer.Typer(
    help="Obliviate: make trained models forget data, and prove it.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
console = TableConsole(soft_wrap=not sys.stdout.isatty())  # log lines unwrapped; tables: see obliviate.tables
err_console = Console(stderr=True, soft_wrap=True)  # one-line errors, never wrapped


@app.callback()
def _global_options(
    output: str = typer.Option(
        "table", "--format", envvar="OBLIVIATE_FORMAT", help=f"how tables are printed: {', '.join(FORMATS)}"
    ),
    plugin: list[str] = typer.Option(
        None, "--plugin", help="import this module first: it registers models, methods, metrics (repeat)"
    ),
) -> None:
    """Obliviate: make trained models forget data, and prove it.

    Plugins (named here, and installed under the ``obliviate.plugins`` entry point) load before any command."""
    if output not in FORMATS:
        raise typer.BadParameter(f"choose from {', '.join(FORMATS)}", param_hint="--format")
    console.format = output
    from obliviate.plugins import load_plugins

    load_plugins(plugin or [])


def user_errors() -> tuple[type[BaseException], ...]:
    """Exceptions that mean bad input (one line, exit 2); imported only when one is raised,
    so that starting the CLI does not import torch."""
    from obliviate.checkpoint import CheckpointError
    from obliviate.data import DataError
    from obliviate.extras import MissingExtra
    from obliviate.forget import ForgetSpecError
    from obliviate.methods import MethodError

    return (
        MissingExtra,
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


def parse_columns(text: str | None) -> list[str] | None:
    """``--features a,b,c`` as a list of column names."""
    return [c.strip() for c in text.split(",") if c.strip()] if text else None


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


def read_keys(keys: str | None, keys_file: Path | None) -> list[str] | None:
    """Record keys from ``--keys a,b`` or ``--keys-file`` (one key per line, or comma-separated)."""
    if keys and keys_file:
        raise ValueError("give --keys or --keys-file, not both")
    if keys_file:
        keys = keys_file.read_text()
    if keys is None:
        return None
    found = [k.strip() for k in keys.replace("\n", ",").split(",") if k.strip()]
    if not found:
        raise ValueError("no keys given")
    return found


def build_spec(
    spec: str | None,
    classes: str | None,
    subclass: str | None,
    indices: str | None,
    fraction: float | None,
    target_range: str | None,
    seed: int,
    keys: list[str] | None = None,
) -> ForgetSpec:
    """A ForgetSpec from ``--spec JSON`` or from exactly one of the selector options."""
    from obliviate.forget import ForgetSpec

    if spec:
        return ForgetSpec.model_validate_json(Path(spec[1:]).read_text() if spec.startswith("@") else spec)
    return ForgetSpec(
        classes=_ints(classes) if classes else None,
        subclass=_pair(subclass, int) if subclass else None,
        indices=_ints(indices) if indices else None,
        keys=keys,
        fraction=fraction,
        target_range=_pair(target_range, float) if target_range else None,
        seed=seed,
    )


SpecOpt = typer.Option(None, "--spec", help="ForgetSpec as JSON, or @file.json")
ClassesOpt = typer.Option(None, "--classes", help="classes to forget, e.g. 3 or 3,5")
SubclassOpt = typer.Option(None, "--subclass", help="SUPER:SUB sub-class to forget")
RowsOpt = typer.Option(
    None,
    "--indices",
    help="rows of your data file, numbered from 0 as given (before any split): 1,2,3 or @file (JSON list or one "
    "per line); for data with a key column use --keys",
)
KeysOpt = typer.Option(None, "--keys", help="record keys to forget (every row with one of them), e.g. p42,p77")
KeysFileOpt = typer.Option(None, "--keys-file", help="file with the record keys to forget, one per line")
TargetOpt = typer.Option(None, "--target", help="target column of a CSV/Parquet table")
KeyOpt = typer.Option(None, "--key", help="record-key column of a CSV/Parquet table (a user id; never a feature)")
FeaturesOpt = typer.Option(
    None, "--features", help="comma-separated feature columns of a table [default: all but target and key]"
)
FractionOpt = typer.Option(None, "--fraction", help="forget this random fraction of training rows")
RangeOpt = typer.Option(None, "--target-range", help="LO:HI regression targets to forget")
SpecSeedOpt = typer.Option(0, "--spec-seed", help="seed for --fraction")
