"""The reference-free verdict and ``method="auto"`` on digits class forgetting."""

from __future__ import annotations

import copy
import time

import pytest
import torch
from pydantic import ValidationError

from obliviate import (
    DataAccessError,
    ForgetSpec,
    Report,
    UnlearningTask,
    VerifyConfig,
    evaluate,
    unlearn,
    verify,
)
from obliviate.auto import AutoError, Probe
from obliviate.evaluation import model_outputs
from obliviate.methods import REGISTRY, Method, register


@pytest.fixture(scope="module")
def retrained(digits_model, class3_task, digits_recipe):
    return unlearn(digits_model, class3_task, "retrain", recipe=digits_recipe).model


def collapsed(model):
    """The model with its last layer zeroed: one constant prediction for every input."""
    broken = copy.deepcopy(model)
    last = [m for m in broken.modules() if isinstance(m, torch.nn.Linear)][-1]
    with torch.no_grad():
        last.weight.zero_()
        last.bias.zero_()
    return broken


def test_verdict_fails_the_original_and_passes_the_retrained_model(digits_model, retrained, class3_task):
    before = verify(digits_model, class3_task, original=digits_model)
    assert not before.passed and before.status == "fail"
    assert before.check("class_recognised").status == "fail" and before.check("class_recognised").value > 90
    after = verify(retrained, class3_task, original=digits_model)
    assert after.passed, after.reason
    assert after.score < 1 < before.score
    auc = after.check("mia_auc")
    assert auc.low <= auc.value <= auc.high and auc.high - auc.low > 0  # a real bootstrap interval
    data = after.to_dict()
    assert data["passed"] and {c["name"] for c in data["checks"]} >= {"mia_auc", "utility", "output_js"}


def test_a_collapsed_model_fails_the_utility_check(digits_model, class3_task):
    verdict = verify(collapsed(digits_model), class3_task, original=digits_model)
    utility = verdict.check("utility")
    assert utility.status == "fail" and utility.value > 50 and not verdict.passed
    assert verify(collapsed(digits_model), class3_task).check("utility").status == "skipped"


def test_a_three_row_request_is_inconclusive(digits_model, digits_split):
    task = UnlearningTask.build(digits_split, ForgetSpec(indices=[0, 1, 2]))
    verdict = verify(digits_model, task, original=digits_model)
    assert verdict.status == "inconclusive" and not verdict.passed
    assert verdict.check("mia_auc").status == "inconclusive" and "too few rows" in verdict.reason


def test_thresholds_are_configurable_and_validated(digits_model, class3_task):
    lenient = verify(digits_model, class3_task, original=digits_model, class_accuracy=100.0)
    assert lenient.check("class_recognised").status == "pass"
    with pytest.raises(ValidationError):
        verify(digits_model, class3_task, no_such_threshold=1.0)
    with pytest.raises(ValidationError):
        VerifyConfig(mia_auc=0.9)


def test_evaluate_without_a_reference_attaches_verdicts(digits_model, class3_task, retrained, tmp_path):
    report = evaluate(class3_task, {"original": digits_model, "forgot": retrained}, metrics=["forget_acc"])
    assert report.reference is None and report.models["forgot"].gaps == {}
    assert report.verdicts["original"]["status"] == "fail" and report.verdicts["forgot"]["status"] == "pass"
    report.save(tmp_path / "r.json")
    assert Report.load(tmp_path / "r.json").verdicts == report.verdicts


def test_auto_returns_a_passing_model_within_its_time_budget(digits_model, class3_task):
    start = time.perf_counter()  # a generous budget: the test machine is shared and its speed varies
    result = unlearn(digits_model, class3_task, "auto", retrain_seconds=200.0, budget=0.5)
    assert time.perf_counter() - start < 0.5 * 200.0 + 5.0  # one step and one final verdict may overrun
    log = result.log
    assert log.method == "auto" and log.details["verdict"]["passed"]
    assert verify(result.model, class3_task, original=digits_model).passed
    assert sum(t.get("steps", 0) for t in log.details["search"]) == log.steps
    assert {"forget", "retain", "test"} <= set(log.needs)


def test_auto_confirms_a_pass_on_confirm_rows_per_view(digits_model, class3_task):
    """The verdict that confirms a pass reads ``confirm_rows`` rows of each view, not all of them."""
    log = unlearn(digits_model, class3_task, "auto", retrain_seconds=200.0, confirm_rows=60).log
    assert len(class3_task.forget_idx) > 60
    assert log.details["verdict"]["forget_rows"] == 60 and log.details["verdict"]["held_out_rows"] <= 60


@pytest.mark.parametrize("spec", [ForgetSpec(classes=[3]), ForgetSpec(fraction=0.1, seed=0)], ids=["class", "random"])
def test_probe_samples_each_view_and_matches_the_full_outputs(spec, digits_split, digits_model):
    """The checks during the search read a sample of each view: rows of that view only, at most
    ``rows`` of them, and the model's outputs on exactly those rows."""
    task = UnlearningTask.build(digits_split, spec)
    probe = Probe.sample(task, 40, seed=0)
    full = model_outputs(digits_model, task)
    sampled = probe.outputs(digits_model, "cpu")
    for view, rows in probe.rows.items():
        idx = torch.arange(len(task.split.test)) if view == "test" else getattr(task, f"{view}_idx")
        assert len(rows) == min(40, len(idx)) and bool(torch.isin(rows, idx).all())
        if not len(rows):  # random forgetting has no forget-test rows
            continue
        position = (idx.unsqueeze(1) == rows).int().argmax(0)  # where each sampled row sits in the view
        assert torch.allclose(sampled[view], full[view][position], atol=1e-5)
        assert torch.equal(getattr(probe, view).y, getattr(task, view).y[position])
    if spec.scenario == "random":  # one random order per split: the same held-out rows serve both views
        assert torch.equal(probe.rows["test"], probe.rows["retain_test"])


def test_auto_counts_steps_against_its_budget(digits_model, class3_task):
    with pytest.raises(AutoError) as err:
        unlearn(
            digits_model, class3_task, "auto", candidates=["finetune", "l1_sparse"], max_steps=7, retrain_seconds=1e4
        )
    search = err.value.search
    assert sum(t.get("steps", 0) for t in search) <= 7
    assert search[0]["steps"] == 7 and search[1]["skipped"] == "budget spent"


class _Spy(Method):
    """Test-only: records the view it was given and whether an undeclared read is refused."""

    name = "test_spy_reads_forget"
    needs = frozenset({"retain"})
    seen: list = []

    def run(self, model, data, ctx):
        try:
            _ = data.forget
        except DataAccessError:
            _Spy.seen.append(("refused", data.needs))
        return model


@pytest.fixture
def spy():
    register(_Spy)
    _Spy.seen.clear()
    yield _Spy
    REGISTRY.pop(_Spy.name)


def test_auto_gives_each_candidate_only_its_declared_data(spy, digits_model, class3_task):
    with pytest.raises(AutoError, match="class_recognised"):
        unlearn(digits_model, class3_task, "auto", candidates=[spy.name], retrain_seconds=100.0)
    assert spy.seen == [("refused", frozenset({"retain"}))]
