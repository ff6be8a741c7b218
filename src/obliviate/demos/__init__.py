"""The demos behind ``obliviate demo``: train, forget, compare with retraining on bundled data."""

from __future__ import annotations

from obliviate.demos.classification import DemoResult, run_demo
from obliviate.demos.regression import PRESETS, REGRESSION_METHODS, run_regression_demo

__all__ = ["PRESETS", "REGRESSION_METHODS", "DemoResult", "run_demo", "run_regression_demo"]
