"""Optional dependencies: imported where they are used, with an error that names the extra.

The core install holds what training, forgetting and evaluating need; the pipeline, the
service, Ray, bundled data sets beyond digits and diabetes, and bench reports are extras
(``pip install 'obliviate[serve]'``, ...), so a missing one is a one-line instruction.
"""

from __future__ import annotations

import importlib
from types import ModuleType


class MissingExtra(ImportError):
    """An optional package is not installed; the message says which extra provides it."""


def need(module: str, extra: str) -> ModuleType:
    """Import ``module`` or raise ``MissingExtra`` naming ``pip install 'obliviate[extra]'``."""
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as exc:
        package = (exc.name or module).split(".")[0]
        raise MissingExtra(f"this needs the {package!r} package: pip install 'obliviate[{extra}]'") from None
