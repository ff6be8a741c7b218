"""Unlearning methods. Every module in this package registers its methods on import."""

from __future__ import annotations

import importlib
import pkgutil

from obliviate.methods.base import (
    REGISTRY,
    Method,
    MethodConfig,
    MethodError,
    RunContext,
    RunLog,
    UnlearningResult,
    get_method,
    make_config,
    register,
    unlearn,
)

for _module in pkgutil.iter_modules(__path__):
    if _module.name != "base":
        importlib.import_module(f"{__name__}.{_module.name}")

__all__ = [
    "REGISTRY",
    "Method",
    "MethodConfig",
    "MethodError",
    "RunContext",
    "RunLog",
    "UnlearningResult",
    "get_method",
    "make_config",
    "register",
    "unlearn",
]
