"""Metrics. Every module in this package registers its metrics on import."""

from __future__ import annotations

import importlib
import pkgutil

from obliviate.metrics.base import METRICS, VIEW_NAMES, MetricContext, MetricInfo, metric

for _module in pkgutil.iter_modules(__path__):
    if _module.name != "base":
        importlib.import_module(f"{__name__}.{_module.name}")

__all__ = ["METRICS", "VIEW_NAMES", "MetricContext", "MetricInfo", "metric"]
