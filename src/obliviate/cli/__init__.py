"""The ``obliviate`` command. Sub-modules add their commands to ``app`` on import."""

from __future__ import annotations

import importlib
import pkgutil
import sys
import warnings

from obliviate.cli.app import app, err_console, user_errors

for _module in pkgutil.iter_modules(__path__):
    if _module.name != "app":
        importlib.import_module(f"{__name__}.{_module.name}")


def _one_line_warning(message, category, filename, lineno, file=None, line=None) -> None:
    err_console.print(f"warning: {message}", markup=False)


def main() -> None:
    """Run the CLI; expected failures print one line and exit 2, never a traceback; library
    warnings (an SSD run that dampened nothing, say) print as one line too."""
    with warnings.catch_warnings():
        warnings.showwarning = _one_line_warning
        try:
            app()
        except Exception as exc:
            from pydantic import ValidationError  # imported late: starting the CLI stays fast

            if isinstance(exc, ValidationError):
                first = exc.errors()[0]
                where = ".".join(map(str, first["loc"])) or "input"
                err_console.print(f"error: invalid {where}: {first['msg']}", markup=False)
            elif isinstance(exc, user_errors()):
                err_console.print(f"error: {exc}", markup=False)
            else:
                raise
            sys.exit(2)


__all__ = ["app", "main"]
