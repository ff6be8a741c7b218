"""On a CUDA GPU: methods keep a CUDA model on its device; re-initialisation is device-independent.

Skipped without CUDA (``pytest -m cuda`` selects these on a GPU machine)."""

from __future__ import annotations

import copy

import pytest
import torch

from obliviate import build_model, unlearn
from obliviate.models import fresh_copy

pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU"),
]


def test_methods_keep_a_cuda_model_on_its_device(digits_model, class3_task):
    model = copy.deepcopy(digits_model).to("cuda")
    for method in ("finetune", "retrain", "bad_teacher", "sisa"):
        result = unlearn(model, class3_task, method, device="cuda")
        devices = {p.device.type for p in result.model.parameters()}
        assert devices == {"cuda"}, f"{method}: parameters on {devices}"


def test_fresh_copy_gives_the_same_weights_on_cuda_and_cpu(digits_split):
    model = build_model("cnn", digits_split.train.input_shape, 10, seed=0)
    state = torch.cuda.get_rng_state()
    on_gpu = fresh_copy(model.to("cuda"), seed=4)
    assert torch.equal(torch.cuda.get_rng_state(), state), "the CUDA random state changed"
    on_cpu = fresh_copy(model.to("cpu"), seed=4)
    for (name, p), q in zip(on_gpu.named_parameters(), on_cpu.parameters(), strict=True):
        assert p.device.type == "cuda" and torch.equal(p.cpu(), q), name
