"""Shared fixtures: the digits split and one small CNN trained on it, built once per session."""

from __future__ import annotations

import os
import tempfile

import pytest
import torch

from obliviate import ForgetSpec, TrainConfig, UnlearningTask, build_model, fit, load_data

torch.set_num_threads(2)
# Pipeline audit keys live outside every home; in tests, in one throw-away folder.
os.environ.setdefault("OBLIVIATE_KEY_DIR", tempfile.mkdtemp(prefix="obliviate-keys-"))

DIGITS_RECIPE = TrainConfig(optimizer="adam", lr=2e-3, epochs=12, batch_size=64, seed=0)


@pytest.fixture(scope="session")
def digits_recipe() -> TrainConfig:
    return DIGITS_RECIPE


@pytest.fixture(scope="session")
def digits_split():
    return load_data("digits", seed=0)


@pytest.fixture(scope="session")
def digits_model(digits_split):
    """A SmallCNN trained on all digits training rows (about 98% test accuracy)."""
    model = build_model("cnn", digits_split.train.input_shape, 10, seed=0)
    return fit(model, digits_split.train, DIGITS_RECIPE).model


@pytest.fixture(scope="session")
def class3_task(digits_split):
    return UnlearningTask.build(digits_split, ForgetSpec(classes=[3]))


@pytest.fixture(scope="session")
def tiny_lm(tmp_path_factory):
    """The pipeline tests' causal LM (``pipeline_helpers.build_tiny_lm``): its directory and facts file."""
    pytest.importorskip("transformers")
    from pipeline_helpers import build_tiny_lm

    return build_tiny_lm(tmp_path_factory.mktemp("tiny-lm"))
