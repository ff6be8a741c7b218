"""The model contract: every registered method runs on every kind of model, or refuses before any
work starts with a one-line ``MethodError``."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.utils.data import Dataset as TorchDataset

from obliviate import Dataset, DataSplit, ForgetSpec, UnlearningTask, build_model, fit, unlearn
from obliviate.adapter import predict
from obliviate.methods import REGISTRY, MethodError
from obliviate.training import TrainConfig

CLASSES = 3

FAST = {
    "retrain": {"recipe": {"epochs": 1}},
    "finetune": {"epochs": 1},
    "gradient_ascent": {"epochs": 1, "max_steps": 2},
    "neggrad_plus": {"epochs": 1},
    "random_labels": {"epochs": 1},
    "amnesiac": {"epochs": 1},
    "bad_teacher": {"epochs": 1},
    "boundary_shrink": {"attack_steps": 2},
    "l1_sparse": {"epochs": 1},
    "salun": {"epochs": 1},
    "unsir": {"noise_per_class": 4, "noise_steps": 2, "retain_per_class": 4},
    "emmn": {"noise_per_class": 4, "noise_steps": 2, "repair_epochs": 1},
    "gkt": {"iterations": 2, "student_steps": 1, "batch_size": 8, "probes_per_class": 2, "probe_steps": 2},
    "model_inversion": {"per_class": 4, "steps": 2, "epochs": 1, "synthesis_batch": 16},
    "sisa": {"shards": 2, "slices": 1, "recipe": {"epochs": 1}},
}
"""A few steps each: the contract is about running, not about forgetting well."""


class GroupNormCNN(nn.Module):
    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.GroupNorm(2, 8), nn.ReLU())
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, CLASSES))

    def forward(self, x):
        return self.head(self.body(x))


class DictOutput(nn.Module):
    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(nn.Flatten(), nn.Linear(64, 16), nn.ReLU())
        self.head = nn.Linear(16, CLASSES)

    def forward(self, x):
        return {"logits": self.head(self.body(x)), "features": x.flatten(1)}


class BareParameter(nn.Module):
    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(nn.Flatten(), nn.Linear(64, CLASSES))
        self.scale = nn.Parameter(torch.full((CLASSES,), 2.0))

    def forward(self, x):
        return self.body(x) * self.scale


class FrozenBackbone(nn.Module):
    def __init__(self):
        super().__init__()
        self.backbone = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(2), nn.Flatten())
        self.backbone.requires_grad_(False)
        self.head = nn.Linear(32, CLASSES)

    def forward(self, x):
        return self.head(self.backbone(x))


def _images(n: int, seed: int) -> Dataset:
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % CLASSES
    X = torch.randn(n, 1, 8, 8, generator=g) * 0.3
    X[torch.arange(n), 0, y * 2, y * 2] += 2.0  # a class-specific bright pixel
    return Dataset(X, y, name="images")


class Tokens(TorchDataset):
    """Token ids where class c always contains token c + 1, with a padding mask."""

    def __init__(self, n: int, seed: int):
        g = torch.Generator().manual_seed(seed)
        self.ids = torch.randint(4, 30, (n, 6), generator=g)
        self.labels = torch.arange(n) % CLASSES
        self.ids[:, 0] = self.labels + 1
        self.mask = torch.ones(n, 6, dtype=torch.long)
        self.mask[:, -1] = 0

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> dict:
        return {"input_ids": self.ids[i], "attention_mask": self.mask[i], "labels": self.labels[i]}


def _hf_classifier() -> nn.Module:
    transformers = pytest.importorskip("transformers")
    config = transformers.BertConfig(
        vocab_size=32, hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32,
        max_position_embeddings=16, num_labels=CLASSES,
    )  # fmt: skip
    torch.manual_seed(0)
    return transformers.BertForSequenceClassification(config)


MODELS = {
    "batchnorm_cnn": lambda: build_model("cnn", (1, 8, 8), CLASSES, seed=0, width=4),
    "groupnorm_cnn": GroupNormCNN,
    "dict_output": DictOutput,
    "bare_parameter": BareParameter,
    "frozen_backbone": FrozenBackbone,
    "hf_sequence_classifier": _hf_classifier,
}


def _split(model_name: str) -> DataSplit:
    if model_name == "hf_sequence_classifier":
        return DataSplit.from_torch(Tokens(48, 0), Tokens(18, 1))
    return DataSplit(_images(48, 0), _images(18, 1))


def _expected_refusal(method: str, model_name: str, model: nn.Module) -> bool:
    cls = REGISTRY[method]
    if "classification" not in cls.kinds:
        return True
    if cls.continuous_inputs and model_name == "hf_sequence_classifier":
        return True
    return method == "sisa" and getattr(model, "obliviate_spec", None) is None


@pytest.mark.parametrize("model_name", list(MODELS))
def test_every_method_runs_or_refuses_in_one_line(model_name):
    torch.manual_seed(0)
    model = MODELS[model_name]()
    split = _split(model_name)
    fit(model, split.train, TrainConfig(epochs=2, batch_size=16))
    task = UnlearningTask.build(split, ForgetSpec(classes=[0]))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    ran, refused = [], {}
    for method in sorted(REGISTRY):
        try:
            result = unlearn(model, task, method, **FAST.get(method, {}))
        except MethodError as exc:
            refused[method] = str(exc)
            continue
        out = predict(result.model, task.test)
        assert out.shape == (len(task.test), CLASSES) and torch.isfinite(out).all(), method
        ran.append(method)
    for method, message in refused.items():
        assert "\n" not in message and message, (method, message)
    expected = {m for m in REGISTRY if _expected_refusal(m, model_name, model)}
    assert set(refused) == expected, {m: refused.get(m) for m in set(refused) ^ expected}
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())  # the original is untouched
    assert len(ran) >= 10
