"""On a CUDA GPU: methods keep a CUDA model on its device; re-initialisation is device-independent.

Skipped without CUDA (``pytest -m cuda`` selects these on a GPU machine)."""

from __future__ import annotations

import copy
import math

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


def test_lm_fine_tuning_unlearning_and_metrics_run_on_cuda():
    pytest.importorskip("transformers")
    pytest.importorskip("peft")
    from obliviate.llm import (
        LM_REGISTRY,
        LMTrainConfig,
        evaluate_lm,
        finetune,
        profile_task,
        tiny_gpt2,
        train_tokenizer,
        unlearn_lm,
    )

    task = profile_task(0.1, n_people=20, seed=0)
    tok = train_tokenizer(task.corpus())
    net = tiny_gpt2(tok, n_layer=1, n_embd=32, n_head=2, seed=0)
    original = finetune(net, tok, task.train, LMTrainConfig(epochs=1), device="cuda").model
    models = {"original": original}
    for name in LM_REGISTRY:
        models[name] = unlearn_lm(original, tok, task, name, epochs=1, batch_size=8).model
        assert {p.device.type for p in models[name].parameters()} == {"cuda"}, name
    rows = evaluate_lm(models, tok, task, reference="original", max_retain=20)
    assert all(math.isfinite(row["model_utility"]) for row in rows.values())
