"""Obliviate: machine unlearning for PyTorch models.

The flow: ``Dataset`` -> ``ForgetSpec`` -> ``UnlearningTask`` -> ``unlearn`` -> ``evaluate``.
"""

from obliviate.data import Dataset, DataSplit, load_data, split_dataset
from obliviate.evaluation import Report, evaluate
from obliviate.forget import DataAccessError, ForgetSpec, ForgetSpecError, Forgotten, UnlearningTask
from obliviate.methods import REGISTRY, RunLog, UnlearningResult, unlearn
from obliviate.models import ActivationRecorder, build_model
from obliviate.training import TrainConfig, fit
from obliviate.verification import Verdict, VerifyConfig, verify

__all__ = [
    "REGISTRY",
    "ActivationRecorder",
    "DataAccessError",
    "DataSplit",
    "Dataset",
    "ForgetSpec",
    "ForgetSpecError",
    "Forgotten",
    "Report",
    "RunLog",
    "TrainConfig",
    "UnlearningResult",
    "UnlearningTask",
    "Verdict",
    "VerifyConfig",
    "build_model",
    "evaluate",
    "fit",
    "load_data",
    "split_dataset",
    "unlearn",
    "verify",
]
