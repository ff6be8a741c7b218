"""The reference-free verdict of ``obliviate.verification`` for a causal LM.

A user who asked a language model to forget some people has no re-fine-tuned model to compare
with, but can name people the model never saw (the *never-seen* keys). A model that forgot
treats the forget facts like those never-seen facts, so the checks compare the two groups with
the same machinery (bootstrap intervals over facts, thresholds, "too few rows to decide"):

- ``mia_auc``: AUC of telling forget from never-seen answers by per-answer loss (mean token NLL),
  read as "forget answers have the lower loss" (0.5: indistinguishable; above: remembered);
- ``rouge_gap``: ROUGE-L recall of the greedy answers on forget facts minus on never-seen facts
  (points): the model's output, as an accuracy gap is for a classifier;
- ``truth_ratio_ks``: p-value of the two-sample Kolmogorov-Smirnov test between the TOFU truth
  ratios on forget facts and on never-seen facts (facts with paraphrased and perturbed answers
  only). TOFU's forget quality runs the same test against the retain oracle's truth ratios on
  the forget facts; to the oracle the forget people are never-seen people, so the never-seen
  facts stand in for it: the reference-free forget quality;
- ``utility``: ROUGE-L recall on retain facts (a fixed sample) and the world probe lost against
  the original (points, paired over the same facts), when the original is given.
"""

from __future__ import annotations

import math

import numpy as np
from pydantic import Field
from scipy.stats import ks_2samp
from torch import nn

from obliviate.llm.data import QA, LMTask
from obliviate.llm.metrics import answer_scores, rouge_recall, truth_ratios
from obliviate.verification import (
    Check,
    Verdict,
    VerifyConfig,
    _judge,
    _mean,
    mean_gap_check,
    mia_auc_check,
    utility_drop_check,
)

MAX_UTILITY_ROWS = 300


class LMVerifyConfig(VerifyConfig):
    """``VerifyConfig`` plus the text checks; ``utility_drop`` is in ROUGE-L points.

    ``truth_ratio_p`` is 0.05: the retain oracle's forget facts against its never-seen facts
    (both unseen by it) gave p = 0.078-0.70 on generator seeds 3 and 10-14 (10 people, 100 facts
    on each side), so 0.1 failed the oracle itself on two seeds of six. Facts of one person are
    correlated, which the test ignores, so its p-values run small."""

    rouge_gap: float = Field(10.0, gt=0, description="allowed |ROUGE-L recall forget - never-seen|, points")
    truth_ratio_p: float = Field(
        0.05, gt=0, lt=1, description="smallest KS p-value of truth ratios, forget vs never-seen facts"
    )


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
        for name in ("mia_auc", "rouge_gap", "truth_ratio_ks"):
            verdict.checks.append(Check(name, "inconclusive", math.nan, math.nan, math.nan, "-", reason, math.nan))
    else:
        lf = answer_scores(model, tokenizer, task.forget).loss
        lh = answer_scores(model, tokenizer, task.holdout).loss
        verdict.checks.append(mia_auc_check(lf, lh, cfg, seed, enough, rows="facts"))
        rf = rouge_recall(model, tokenizer, task.forget) * 100
        rh = rouge_recall(model, tokenizer, task.holdout) * 100
        what = f"answers recall {_mean(rf):.1f}% of forget facts vs {_mean(rh):.1f}% of never-seen facts"
        verdict.checks.append(mean_gap_check("rouge_gap", rf, rh, cfg.rouge_gap, what, cfg, seed, enough))
        verdict.checks.append(
            truth_ratio_check(
                truth_ratios(model, tokenizer, task.forget), truth_ratios(model, tokenizer, task.holdout), cfg
            )
        )
    verdict.checks.append(_utility(model, original, tokenizer, task, cfg, seed))
    return verdict


def truth_ratio_check(forget: np.ndarray, held: np.ndarray, cfg: LMVerifyConfig) -> Check:
    """Forget vs never-seen truth ratios by the KS test: passes when the p-value is at least
    ``cfg.truth_ratio_p``. Severity ``log p / log threshold``: 0 for identical samples, 1 at the
    threshold. No bootstrap interval: the p-value already weighs the sample sizes."""
    bound = f"KS p >= {cfg.truth_ratio_p:g}"
    if not len(forget) or not len(held):
        reason = "no facts with paraphrased and perturbed answers to compute truth ratios"
        return Check("truth_ratio_ks", "inconclusive", math.nan, math.nan, math.nan, bound, reason, math.nan)
    test = ks_2samp(forget, held)
    p = float(test.pvalue)
    what = (
        f"truth ratios {np.median(forget):.2f} (forget) vs {np.median(held):.2f} (never-seen) medians, "
        f"KS D {test.statistic:.2f}, p {p:.2g}"
    )
    severity = math.log(max(p, 1e-300)) / math.log(cfg.truth_ratio_p)
    enough = min(len(forget), len(held)) >= cfg.min_rows
    return _judge("truth_ratio_ks", p, (math.nan, math.nan), severity, bound, what, enough)


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
