"""Each metric of the evaluation suite against a value computed by hand, plus sanity checks."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from obliviate import ForgetSpec, TrainConfig, UnlearningTask, build_model, evaluate, fit, load_data, unlearn
from obliviate.data import Dataset, split_dataset
from obliviate.metrics import METRICS
from obliviate.metrics.divergence import zrf_score
from obliviate.metrics.klom import example_klom, klom
from obliviate.metrics.lira import gaussian_log_ratio, lira_scores, tpr_at_fpr, ulira
from obliviate.metrics.mia_confidence import confidence_svc_efficacy
from obliviate.metrics.scores import js_divergence, logit_confidence, margin, true_class_confidence
from obliviate.metrics.tow import tow_score
from obliviate.models import fresh_copy

LN2 = math.log(2)


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny models gain nothing from threads, and on a shared machine spinning threads cost 10x."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def logits_of(*probs: list[float]) -> torch.Tensor:
    return torch.log(torch.tensor(probs, dtype=torch.float64))


# ---- per-example scores -------------------------------------------------------------------


def test_scores_by_hand():
    z = torch.tensor([[2.0, 0.0, 0.0], [0.0, 1.0, 3.0]])
    y = torch.tensor([0, 1])
    p0 = math.exp(2) / (math.exp(2) + 2)
    p1 = math.e / (1 + math.e + math.exp(3))
    assert true_class_confidence(z, y).tolist() == pytest.approx([p0, p1])
    # ln(p / (1 - p)) = z_y - ln(sum of the other exp(z))
    assert logit_confidence(z, y).tolist() == pytest.approx([2 - math.log(2), 1 - math.log(1 + math.exp(3))])
    assert margin(z, y).tolist() == pytest.approx([2.0, -2.0])


def test_logit_confidence_stays_finite_when_confident():
    z = torch.tensor([[60.0, 0.0]])
    assert logit_confidence(z, torch.tensor([0])).item() == pytest.approx(60.0)


def test_js_divergence_by_hand():
    p, q = [0.5, 0.5], [0.9, 0.1]
    m = [0.7, 0.3]
    kl_pm = sum(a * math.log(a / b) for a, b in zip(p, m, strict=True))
    kl_qm = sum(a * math.log(a / b) for a, b in zip(q, m, strict=True))
    got = js_divergence(logits_of(p), logits_of(q))
    assert got.item() == pytest.approx((kl_pm + kl_qm) / 2, rel=1e-9)


def test_js_divergence_bounds():
    a = torch.tensor([[50.0, -50.0], [1.0, 2.0]])
    b = torch.tensor([[-50.0, 50.0], [1.0, 2.0]])
    js = js_divergence(a, b)
    assert js[0].item() == pytest.approx(LN2, abs=1e-12)  # disjoint supports: exactly ln 2 nats
    assert js[1].item() == 0.0  # identical distributions


# ---- ZRF, JS to reference, activation distance ---------------------------------------------


def test_zrf_score_by_hand():
    same = torch.tensor([[1.0, 2.0]])
    assert zrf_score(same, same) == 1.0
    assert zrf_score(torch.tensor([[50.0, -50.0]]), torch.tensor([[-50.0, 50.0]])) == pytest.approx(1 - LN2)
    p, q = [0.5, 0.5], [0.9, 0.1]
    expected = 1 - js_divergence(logits_of(p), logits_of(q)).item()
    assert zrf_score(logits_of(p, q), logits_of(q, q)) == pytest.approx((expected + 1) / 2)


@pytest.fixture(scope="module")
def digits_models():
    """A small MLP on digits, its retrained reference for class 3, and a fine-tuned copy."""
    torch.manual_seed(0)
    split = load_data("digits", seed=0)
    task = UnlearningTask.build(split, ForgetSpec(classes=[3]))
    recipe = TrainConfig(lr=2e-3, epochs=8, batch_size=64)
    original = fit(build_model("mlp", split.train.input_shape, 10, hidden=(64,)), split.train, recipe).model
    retrain = unlearn(original, task, "retrain", recipe=recipe).model
    return task, original, retrain


def test_zrf_is_one_for_the_random_network_itself(digits_models):
    task, original, retrain = digits_models
    random_net = fresh_copy(original, seed=5)  # the network ZRF compares with when seed=5
    report = evaluate(task, {"random": random_net, "retrain": retrain}, original=None, metrics=["zrf"], seed=5)
    assert report.models["random"].metrics["zrf"] == pytest.approx(1.0)
    assert 1 - LN2 <= report.models["retrain"].metrics["zrf"] < 1.0
    assert "zrf" in report.models["random"].gaps  # reported beside the reference's value


def test_reference_distances_by_hand_and_identity(digits_models):
    task, original, retrain = digits_models
    report = evaluate(
        task,
        {"original": original, "retrain": retrain, "copy": retrain},
        metrics=["js_reference", "activation_distance"],
    )
    copy = report.models["copy"].metrics
    assert copy["js_reference"] == pytest.approx(0.0, abs=1e-12)  # identical models
    assert copy["activation_distance"] == 0.0
    # by hand from the cached outputs
    from obliviate.evaluation import model_outputs

    o, r = model_outputs(original, task)["forget"], model_outputs(retrain, task)["forget"]
    dist = (torch.softmax(o.double(), 1) - torch.softmax(r.double(), 1)).pow(2).sum(1).sqrt().mean()
    assert report.models["original"].metrics["activation_distance"] == pytest.approx(dist.item())
    assert 0 < report.models["original"].metrics["js_reference"] <= LN2
    assert METRICS["js_reference"].direction == "lower" and METRICS["activation_distance"].direction == "lower"


# ---- ToW, confidence-SVC MIA --------------------------------------------------------------


def test_tow_by_hand(digits_models):
    assert tow_score({"forget": 90, "retain": 80, "test": 70}, {"forget": 100, "retain": 80, "test": 60}) == (
        pytest.approx(0.9 * 1.0 * 0.9)
    )
    task, original, retrain = digits_models
    report = evaluate(
        task, {"original": original, "retrain": retrain}, metrics=["tow", "forget_acc", "retain_acc", "test_acc"]
    )
    m, ref = report.models["original"].metrics, report.models["retrain"].metrics
    expected = math.prod(1 - abs(m[f"{v}_acc"] - ref[f"{v}_acc"]) / 100 for v in ("forget", "retain", "test"))
    assert m["tow"] == pytest.approx(expected)
    assert ref["tow"] == 1.0
    assert METRICS["tow"].direction == "higher"


def test_confidence_svc_by_hand():
    rng = np.random.default_rng(0)
    members = 0.97 + 0.02 * rng.random(200)  # training rows: confident
    non_members = 0.1 + 0.2 * rng.random(200)  # unseen rows: unsure
    forget = np.array([0.98, 0.15, 0.99, 0.2])  # two look like members, two like non-members
    assert confidence_svc_efficacy(members, non_members, forget) == 50.0
    assert confidence_svc_efficacy(members, non_members, np.array([0.12, 0.18])) == 100.0


def test_confidence_svc_on_models(digits_models):
    task, original, retrain = digits_models
    report = evaluate(task, {"original": original, "retrain": retrain}, metrics=["mia_confidence_svc"])
    # the retrained model never saw class 3: its forget rows look like non-members
    assert report.models["retrain"].metrics["mia_confidence_svc"] > 90
    assert report.models["original"].metrics["mia_confidence_svc"] < 50
    assert METRICS["mia_confidence_svc"].direction == "reference"


# ---- KLoM ---------------------------------------------------------------------------------


def test_klom_by_hand():
    # one example, two bins over [0, 1]; counts + 1 each: unlearned (3, 3)/6, retrained (2, 4)/6
    u, r = np.array([[0.0], [0.0], [1.0], [1.0]]), np.array([[0.0], [1.0], [1.0], [1.0]])
    expected = 0.5 * math.log(0.5 / (2 / 6)) + 0.5 * math.log(0.5 / (4 / 6))
    assert example_klom(u, r, bins=2)[0] == pytest.approx(expected)
    same = np.random.default_rng(0).normal(size=(8, 5))
    assert np.allclose(example_klom(same, same), 0.0)
    values = np.stack([u[:, 0], u[:, 0] + 5, u[:, 0]], axis=1)
    per = example_klom(values, np.stack([r[:, 0], r[:, 0], r[:, 0]], axis=1), bins=2)
    assert klom(values, np.stack([r[:, 0]] * 3, axis=1), bins=2) == pytest.approx(np.percentile(per, 95))


# ---- LiRA and U-LiRA ----------------------------------------------------------------------


def test_lira_pieces_by_hand():
    # log N(0; 0, 1) - log N(0; 2, 1) = 0 - (-2) = 2
    assert gaussian_log_ratio(np.array(0.0), 0.0, 1.0, 2.0, 1.0) == pytest.approx(2.0)
    assert gaussian_log_ratio(np.array(1.0), 0.0, 2.0, 1.0, 1.0) == pytest.approx(-0.125 - math.log(2))
    negatives = np.arange(100.0)  # threshold at 1% FPR: the 99th largest value, 99
    assert tpr_at_fpr(np.array([99.5, 98.0, 150.0, 10.0]), negatives, 0.01) == 0.5
    # two rows, two shadows: row 0 seen by shadow 0 only, row 1 by shadow 1 only
    shadows = np.array([[4.0, 0.0], [0.0, 4.0]])
    members = np.array([[True, False], [False, True]])
    scores = lira_scores(np.array([4.0, 0.0]), shadows, members)
    # per-row means: in = 4, out = 0; pooled spreads fall back to the floor 1e-3 (no residual spread)
    assert scores[0] > 0 > scores[1]


def test_ulira_separates_only_different_ensembles():
    rng = np.random.default_rng(0)
    retrained = rng.normal(0, 1, size=(8, 40))
    same = rng.normal(0, 1, size=(8, 40))
    shifted = rng.normal(3, 1, size=(8, 40))
    assert abs(ulira(same, retrained)["auc"] - 0.5) < 0.1
    assert ulira(shifted, retrained)["auc"] > 0.95
    assert ulira(shifted, retrained)["models"] == 16


@pytest.fixture(scope="module")
def memorising_task():
    """Random labels: a model can only fit its training rows by memorising them, which makes
    membership easy to see, so LiRA must flag the original and not the retrained model."""
    gen = torch.Generator().manual_seed(0)
    data = Dataset(torch.randn(240, 16, generator=gen), torch.randint(0, 4, (240,), generator=gen), name="noise")
    split = split_dataset(data, 0.25, seed=0)
    return UnlearningTask.build(split, ForgetSpec(fraction=0.2, seed=0))


def test_lira_flags_memorised_rows_only_in_the_original(memorising_task):
    task = memorising_task
    recipe = TrainConfig(lr=5e-3, epochs=60, batch_size=32)
    original = fit(build_model("mlp", task.input_shape, 4, hidden=(128,)), task.train, recipe).model
    retrain = unlearn(original, task, "retrain", recipe=recipe).model
    options = {"lira": {"shadow_models": 4, "recipe": recipe.model_dump()}}
    report = evaluate(task, {"original": original, "retrain": retrain}, metrics=["lira"], options=options)
    orig, ref = report.models["original"].metrics, report.models["retrain"].metrics
    assert orig["lira.shadow_models"] == 4  # printed with the result
    assert orig["lira.auc"] > 0.8
    assert abs(ref["lira.auc"] - 0.5) < 0.15
    assert orig["lira.tpr@1%fpr"] > ref["lira.tpr@1%fpr"]
    assert not METRICS["lira"].default  # shadow models are expensive: only when asked for
