"""The reference-free verdict of ``obliviate.verification`` for a causal LM.

A user who asked a language model to forget some people has no re-fine-tuned model to compare
with, but can name people the model never saw (the *never-seen* keys). A model that forgot
treats the forget facts like those never-seen facts, so the checks compare the two groups with
the same machinery (bootstrap intervals over facts, thresholds, "too few rows to decide"):

- ``mia_auc``: AUC of telling forget from never-seen answers by per-answer loss (mean token NLL),
  read as "forget answers have the lower loss" (0.5: indistinguishable; above: remembered);
- ``rouge_gap``: ROUGE-L recall of the greedy answers on forget facts minus on never-seen facts
  (points): the model's output, as an accuracy gap is for a classifier;
- ``utility``: ROUGE-L recall on retain facts (a fixed sample) and the world probe lost against
  the original (points, paired over the same facts), when the original is given.
"""

from __future__ import annotations

import math

import numpy as np
from pydantic import Field
from torch import nn

from obliviate.llm.data import QA, LMTask
from obliviate.llm.metrics import answer_scores, rouge_recall
from obliviate.verification import (
    Check,
    Verdict,
    VerifyConfig,
    _mean,
    mean_gap_check,
    mia_auc_check,
    utility_drop_check,
)

MAX_UTILITY_ROWS = 300


class LMVerifyConfig(VerifyConfig):
    """``VerifyConfig`` plus the generated-text check; ``utility_drop`` is in ROUGE-L points."""

    rouge_gap: float = Field(10.0, gt=0, description="allowed |ROUGE-L recall forget - never-seen|, points")


def _utility_rows(task: LMTask, seed: int) -> list[QA]:
    rng = np.random.default_rng(seed)
    picked = sorted(rng.permutation(len(task.retain))[:MAX_UTILITY_ROWS])
    return [*(task.retain[i] for i in picked), *task.world]


def verify_lm(
    model: nn.Module,
    tokenizer,
    task: LMTask,
    original: nn.Module | None = None,
    *,
    config: LMVerifyConfig | None = None,
    seed: int = 0,
    **thresholds: float,
) -> Verdict:
    """Judge whether ``model`` forgot ``task.forget`` against ``task.holdout`` (facts of people it
    never saw), without a retain model; ``original`` enables the utility check."""
    cfg = LMVerifyConfig(**{**(config or LMVerifyConfig()).model_dump(), **thresholds})
    n_f, n_h = len(task.forget), len(task.holdout)
    enough = min(n_f, n_h) >= cfg.min_rows
    verdict = Verdict("keys", n_f, n_h)
    if not n_h:
        reason = "no never-seen facts given (name keys the model never saw)"
        for name in ("mia_auc", "rouge_gap"):
            verdict.checks.append(Check(name, "inconclusive", math.nan, math.nan, math.nan, "-", reason, math.nan))
    else:
        lf = answer_scores(model, tokenizer, task.forget).loss
        lh = answer_scores(model, tokenizer, task.holdout).loss
        verdict.checks.append(mia_auc_check(lf, lh, cfg, seed, enough, rows="facts"))
        rf = rouge_recall(model, tokenizer, task.forget) * 100
        rh = rouge_recall(model, tokenizer, task.holdout) * 100
        what = f"answers recall {_mean(rf):.1f}% of forget facts vs {_mean(rh):.1f}% of never-seen facts"
        verdict.checks.append(mean_gap_check("rouge_gap", rf, rh, cfg.rouge_gap, what, cfg, seed, enough))
    verdict.checks.append(_utility(model, original, tokenizer, task, cfg, seed))
    return verdict


def _utility(
    model: nn.Module, original: nn.Module | None, tokenizer, task: LMTask, cfg: LMVerifyConfig, seed: int
) -> Check:
    if original is None:
        return Check("utility", "skipped", math.nan, math.nan, math.nan, "-", "no original model given", math.nan)
    rows = _utility_rows(task, seed)
    if not rows:
        return Check("utility", "skipped", math.nan, math.nan, math.nan, "-", "no retain facts", math.nan)
    now = rouge_recall(model, tokenizer, rows) * 100
    before = rouge_recall(original, tokenizer, rows) * 100
    what = f"retain answers recall {_mean(now):.1f}% vs original {_mean(before):.1f}%"
    return utility_drop_check(now, before, what, cfg, seed)
