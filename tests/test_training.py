"""Models, activation hooks and the training loop: shapes, reproducibility, early stopping."""

from __future__ import annotations

import pytest
import torch

from obliviate import ActivationRecorder, TrainConfig, build_model, fit
from obliviate.data import Dataset
from obliviate.models import fresh_copy


@pytest.mark.parametrize("name", ["mlp", "cnn", "allcnn", "resnet18"])
@pytest.mark.parametrize("shape", [(1, 8, 8), (3, 32, 32)])
def test_models_build_for_any_image_size(name, shape):
    kwargs = {"width": 8} if name == "resnet18" else {"width": 0.1} if name == "allcnn" else {}
    model = build_model(name, shape, 7, **kwargs)
    assert model(torch.zeros(2, *shape)).shape == (2, 7)


def test_unknown_model():
    with pytest.raises(KeyError, match="unknown model"):
        build_model("transformer-xxl", (4,), 2)


def test_activation_recorder_reads_any_module():
    model = build_model("cnn", (1, 8, 8), 10)
    with ActivationRecorder(model) as rec:
        model(torch.zeros(3, 1, 8, 8))
    assert set(rec.activations) == {"block1", "block2", "pool"}
    assert rec.activations["block1"].shape[:2] == (3, 32)
    model(torch.zeros(1, 1, 8, 8))  # hooks are removed on exit
    assert rec.activations["block1"].shape[0] == 3
    with pytest.raises(KeyError, match="no sub-modules"):
        ActivationRecorder(model, ["nope"])


def test_fresh_copy_reinitialises_without_touching_original(digits_model):
    before = {k: v.clone() for k, v in digits_model.state_dict().items()}
    fresh = fresh_copy(digits_model, seed=1)
    assert not torch.equal(fresh.head.weight, digits_model.head.weight)
    assert all(torch.equal(v, digits_model.state_dict()[k]) for k, v in before.items())


def _data(n: int = 200, seed: int = 0) -> Dataset:
    gen = torch.Generator().manual_seed(seed)
    X = torch.randn(n, 5, generator=gen)
    return Dataset(X, (X[:, 0] + X[:, 1] > 0).long())


def test_same_seed_same_weights_and_different_seed_differs():
    cfg = TrainConfig(epochs=3, seed=5, batch_size=16)
    a = fit(build_model("mlp", (5,), 2, seed=5), _data(), cfg).model
    torch.manual_seed(999)  # global state must not matter
    b = fit(build_model("mlp", (5,), 2, seed=5), _data(), cfg).model
    for (ka, va), (_, vb) in zip(a.state_dict().items(), b.state_dict().items(), strict=True):
        assert torch.equal(va, vb), ka
    c = fit(build_model("mlp", (5,), 2, seed=5), _data(), cfg.model_copy(update={"seed": 6})).model
    assert not torch.equal(a.head.weight, c.head.weight)


def test_fit_learns_and_reports_steps():
    result = fit(build_model("mlp", (5,), 2), _data(), TrainConfig(epochs=20, batch_size=50, lr=1e-2))
    assert result.steps == 20 * 4 and result.seconds > 0
    assert result.history[-1]["train_loss"] < 0.5 * result.history[0]["train_loss"]


def test_early_stopping_restores_best_epoch():
    noisy = _data(60)
    noisy = Dataset(noisy.X, torch.randint(0, 2, (60,), generator=torch.Generator().manual_seed(1)))
    cfg = TrainConfig(epochs=60, lr=3e-2, val_fraction=0.3, patience=3, batch_size=8)
    result = fit(build_model("mlp", (5,), 2, hidden=(64,)), noisy, cfg)
    assert len(result.history) < 60
    best = min(h["val_loss"] for h in result.history)
    assert result.history[result.best_epoch]["val_loss"] == best


def test_regression_training_reduces_error():
    gen = torch.Generator().manual_seed(0)
    X = torch.randn(256, 3, generator=gen)
    data = Dataset(X, X @ torch.tensor([1.0, -2.0, 0.5]), kind="regression")
    result = fit(build_model("mlp", (3,), 1), data, TrainConfig(epochs=30, lr=1e-2))
    assert result.history[-1]["train_loss"] < 0.05


def test_empty_data_is_refused():
    with pytest.raises(ValueError, match="empty"):
        fit(build_model("mlp", (5,), 2), _data().subset([]), TrainConfig(epochs=1))
