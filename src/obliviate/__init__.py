"""Obliviate: machine unlearning for PyTorch models.

The flow: ``Dataset`` -> ``ForgetSpec`` -> ``UnlearningTask`` -> ``unlearn`` -> ``evaluate``.
"""

import importlib

_HOMES = {
    "obliviate.data": ("Dataset", "DataSplit", "load_data", "split_dataset"),
    "obliviate.evaluation": ("evaluate",),
    "obliviate.forget": ("DataAccessError", "ForgetSpec", "ForgetSpecError", "Forgotten", "UnlearningTask"),
    "obliviate.methods": ("REGISTRY", "UnlearningResult", "unlearn"),
    "obliviate.models": ("ActivationRecorder", "build_model"),
    "obliviate.records": ("Report", "RunLog"),
    "obliviate.training": ("TrainConfig", "fit"),
    "obliviate.verification": ("Verdict", "VerifyConfig", "verify"),
}
_WHERE = {name: module for module, names in _HOMES.items() for name in names}


def __getattr__(name: str):
    """Import on first use (PEP 562), so ``obliviate --help`` does not wait for torch."""
    if name not in _WHERE:
        raise AttributeError(f"module 'obliviate' has no attribute {name!r}")
    value = getattr(importlib.import_module(_WHERE[name]), name)
    globals()[name] = value
    return value


__all__ = sorted(_WHERE)
