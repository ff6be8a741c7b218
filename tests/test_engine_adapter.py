"""The model adapter (any output, dict batches, integer inputs) and the shared training engine."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from obliviate import Dataset, DataSplit, ForgetSpec, UnlearningTask, unlearn
from obliviate.adapter import OutputError, forward, logits, predict, using_output
from obliviate.engine import Engine
from obliviate.methods import MethodError
from obliviate.metrics.anamnesis import relearn_steps


def _data(n: int = 32) -> Dataset:
    X = torch.randn(n, 4, generator=torch.Generator().manual_seed(0))
    return Dataset(X, (X[:, 0] > 0).long())


def test_logits_are_read_from_every_common_output():
    z = torch.randn(3, 2)
    transformers = pytest.importorskip("transformers")
    hf = transformers.modeling_outputs.SequenceClassifierOutput(logits=z)
    for out in (z, (z, "aux"), [z], {"logits": z, "hidden": 1}, hf):
        assert logits(out) is z
    with pytest.raises(OutputError, match="output="):
        logits({"scores": z})


def test_dict_batches_are_keyword_arguments_and_ids_stay_integers():
    class Embed(nn.Module):
        def __init__(self):
            super().__init__()
            self.emb = nn.EmbeddingBag(10, 2, mode="sum")

        def forward(self, input_ids, attention_mask):
            assert input_ids.dtype == torch.int64
            return self.emb(input_ids, per_sample_weights=attention_mask.float())

    ids = torch.randint(0, 10, (5, 3))
    out = forward(Embed(), {"input_ids": ids, "attention_mask": torch.ones(5, 3, dtype=torch.long)})
    assert out.shape == (5, 2)
    tokens = Dataset(ids, torch.arange(5) % 2)
    model = nn.Sequential(nn.Embedding(10, 2), nn.Flatten(), nn.Linear(6, 2))
    assert predict(model, tokens).shape == (5, 2)


def test_output_function_reads_unusual_outputs_everywhere():
    class Scores(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(4, 2)

        def forward(self, x):
            return {"scores": self.fc(x)}

    data = _data()
    task = UnlearningTask.build(DataSplit(data, _data(8)), ForgetSpec(indices=[0, 1]))
    with pytest.raises(MethodError, match="output="):
        unlearn(Scores(), task, "finetune")
    result = unlearn(Scores(), task, "finetune", epochs=1, output=lambda out: out["scores"])
    assert result.log.steps > 0
    with using_output(lambda out: out["scores"]):
        assert predict(result.model, data).shape == (32, 2)


def test_engine_guards_counts_clips_and_stops():
    model = nn.Linear(4, 2)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    engine = Engine(clip_norm=1e-3)
    before = model.weight.detach().clone()
    engine.run(
        model, opt, _data(), lambda b: nn.functional.cross_entropy(model(b.x), b.y) * 1e3, batch_size=8, max_steps=3
    )
    assert engine.steps == 3
    assert (model.weight - before).norm() <= 3 * 0.1 * 1e-3 + 1e-6  # each step moved at most lr * clip
    engine.run(model, opt, _data(), lambda b: model(b.x).sum(), epochs=5, batch_size=8, stop=lambda: True)
    assert engine.steps == 4
    with pytest.raises(FloatingPointError, match="became nan"):
        engine.run(model, opt, _data(), lambda b: model(b.x).sum() * float("nan"))


def test_bf16_autocast_and_frozen_batchnorm_policy():
    model = nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.Linear(8, 2))
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    engine = Engine(precision="bf16")
    dtypes = []

    def loss(b):
        out = model(b.x)
        dtypes.append(out.dtype)
        return nn.functional.cross_entropy(out.float(), b.y)

    stats = model[1].running_mean.clone()
    engine.run(model, opt, _data(), loss, batchnorm="frozen")
    assert dtypes[0] == torch.bfloat16 and torch.equal(stats, model[1].running_mean)
    with pytest.raises(ValueError, match="precision"):
        Engine(precision="fp8")


def test_relearning_runs_through_the_engine_and_leaves_the_model_alone():
    data = _data(40)
    task = UnlearningTask.build(DataSplit(data, _data(10)), ForgetSpec(indices=list(range(8))))
    model = nn.Linear(4, 2)
    before = model.weight.detach().clone()
    steps = relearn_steps(model, task, target=100.0)
    assert 0 < steps <= 300 and torch.equal(model.weight, before)
