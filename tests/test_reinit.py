"""Re-initialisation (``fresh_copy``): every trainable tensor new, every frozen one kept, RNG untouched."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from obliviate.models import ReinitError, fresh_copy


class Mixed(nn.Module):
    """A frozen 'pretrained' backbone, a trainable BatchNorm head, a bare matrix and a bare scalar."""

    def __init__(self):
        super().__init__()
        self.backbone = nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten())
        self.head = nn.Sequential(nn.Linear(144, 16), nn.BatchNorm1d(16), nn.Linear(16, 3))
        self.mix = nn.Parameter(torch.randn(3, 3))
        self.temperature = nn.Parameter(torch.tensor(3.0))

    def forward(self, x):
        return self.head(self.backbone(x)) @ self.mix / self.temperature


def trained_mixed() -> Mixed:
    """A Mixed whose trainable tensors and norm statistics have all moved away from their init."""
    torch.manual_seed(0)
    model = Mixed()
    model.backbone.requires_grad_(False)
    x, y = torch.randn(64, 1, 8, 8), torch.randint(0, 3, (64,))
    model.train()
    with torch.no_grad():  # statistics of the frozen backbone from its 'pretraining'
        model.backbone(x * 3 + 1)
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.1)
    for _ in range(5):
        opt.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
    return model


def test_trainable_tensors_change_frozen_ones_stay():
    model = trained_mixed()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    fresh = fresh_copy(model, seed=3)
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items()), "the original was changed"
    new = dict(fresh.named_parameters())
    for name, p in model.named_parameters():
        if p.requires_grad:
            assert not torch.equal(new[name], p), f"trainable {name} was not re-initialised"
        else:
            assert torch.equal(new[name], p), f"frozen {name} changed"
    bn_frozen, bn_trainable = fresh.backbone[1], fresh.head[1]
    assert torch.equal(bn_frozen.running_mean, model.backbone[1].running_mean)  # pretrained statistics kept
    assert torch.equal(bn_frozen.running_var, model.backbone[1].running_var)
    assert torch.equal(bn_trainable.running_mean, torch.zeros(16))
    assert torch.equal(bn_trainable.running_var, torch.ones(16))
    temperature = float(fresh.temperature.detach())
    assert 1.5 <= temperature <= 4.5 and temperature != float(model.temperature.detach())


def test_seeded_and_private_random_stream():
    model = trained_mixed()
    torch.manual_seed(123)
    state = torch.get_rng_state()
    a, b, c = fresh_copy(model, seed=7), fresh_copy(model, seed=7), fresh_copy(model, seed=8)
    fresh_copy(model)  # unseeded: a fresh random seed, still not from the global stream
    assert torch.equal(torch.get_rng_state(), state), "fresh_copy changed the global random state"
    for (name, pa), pb, pc in zip(a.named_parameters(), b.parameters(), c.parameters(), strict=True):
        assert torch.equal(pa, pb), f"same seed, different {name}"
        if pa.requires_grad and not name.startswith("head.1."):  # BatchNorm's init is not random
            assert not torch.equal(pa, pc), f"different seeds, same {name}"


def test_builtin_layers_match_torchs_own_reset():
    """Plain torch layers get exactly their own ``reset_parameters`` init under the seed."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(5, 4), nn.ReLU(), nn.Linear(4, 2))
    fresh = fresh_copy(net, seed=11)
    torch.manual_seed(11)
    expected = nn.Sequential(nn.Linear(5, 4), nn.ReLU(), nn.Linear(4, 2))
    for p, q in zip(fresh.parameters(), expected.parameters(), strict=True):
        assert torch.equal(p, q)


class HalfReset(nn.Module):
    """A module whose own reset forgets one of its parameters."""

    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.randn(4, 4))
        self.forgotten = nn.Parameter(torch.randn(4))

    def reset_parameters(self):
        nn.init.normal_(self.w)

    def forward(self, x):
        return x @ self.w + self.forgotten


def test_incomplete_reset_is_loud():
    with pytest.raises(ReinitError, match=r"'1\.forgotten': HalfReset\.reset_parameters"):
        fresh_copy(nn.Sequential(nn.Linear(4, 4), HalfReset()), seed=0)


def test_frozen_models_keep_frozen_or_become_wholly_random():
    model = trained_mixed()
    with pytest.raises(ReinitError, match="no trainable parameters"):
        fresh_copy(model.requires_grad_(False), seed=0)
    random_net = fresh_copy(model, seed=1, keep_frozen=False)  # what ZRF compares with
    for (name, p), q in zip(random_net.named_parameters(), model.parameters(), strict=True):
        deterministic_init = name.startswith(("backbone.1.", "head.1."))  # BatchNorm: ones and zeros
        assert not p.requires_grad and (deterministic_init or not torch.equal(p, q)), name
    assert torch.equal(random_net.backbone[1].running_var, torch.ones(4))  # frozen statistics reset too


def test_retrain_keeps_a_frozen_backbone_pretrained():
    from obliviate import ForgetSpec, TrainConfig, UnlearningTask, load_data, unlearn

    task = UnlearningTask.build(load_data("digits"), ForgetSpec(classes=[3]))
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10))
    model[1].requires_grad_(False)
    ref = unlearn(model, task, "retrain", recipe=TrainConfig(epochs=1)).model
    assert torch.equal(ref[1].weight, model[1].weight) and torch.equal(ref[1].bias, model[1].bias)
    assert not torch.equal(ref[3].weight, model[3].weight)


def test_hugging_face_model_gets_its_own_init():
    transformers = pytest.importorskip("transformers")
    config = transformers.BertConfig(
        vocab_size=50, hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32, num_labels=3
    )
    model = transformers.BertForSequenceClassification(config)
    with torch.no_grad():  # stands in for training: every tensor moves away from its init
        for p in model.parameters():
            p.add_(torch.rand_like(p))
            p._is_hf_initialized = True  # as after from_pretrained: Hugging Face's init would skip it
    fresh = fresh_copy(model, seed=0)
    for (name, p), q in zip(fresh.named_parameters(), model.parameters(), strict=True):
        assert not torch.equal(p, q), name
    query = fresh.bert.encoder.layer[0].attention.self.query.weight
    assert 0.01 < float(query.detach().std()) < 0.03  # BERT's normal(0, 0.02), not torch's Linear default (about 0.14)
