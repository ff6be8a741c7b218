"""LiRA and U-LiRA: likelihood-ratio membership attacks with per-example Gaussians (DESIGN section 5).

``lira`` (a metric, off by default: it trains shadow models) attacks one model: shadow models
are trained on random halves of all rows (train + test), so every forget and test row has
shadows that saw it and shadows that did not. The logit-scaled confidence of each group is fit
with a Gaussian per example (means per example, one pooled spread per group, which is stable
with few shadows), and the evaluated model's confidence gets the log likelihood ratio
"member vs non-member". AUC and TPR at low FPR separate forget rows from the (non-member) test
rows: a model that truly forgot scores like the retrained one (about 0.5 AUC).

``ulira`` (a function) is the unlearning variant of Hayes et al. (2024): the shadows are N
unlearned and N retrained models, and each (model, forget example) pair is classified as
"unlearned" or "retrained" by a Gaussian fit on the other models (leave one out).
"""

from __future__ import annotations

import weakref

import numpy as np
import torch
from sklearn.metrics import roc_auc_score

from obliviate.data import Dataset, concat
from obliviate.forget import UnlearningTask
from obliviate.metrics.base import MetricContext, metric
from obliviate.metrics.scores import logit_confidence
from obliviate.models import fresh_copy
from obliviate.training import TrainConfig, fit, predict

DEFAULT_SHADOW_MODELS = 8
_SHADOW_CACHE: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def gaussian_log_ratio(x: np.ndarray, mu_in, sd_in, mu_out, sd_out) -> np.ndarray:
    """log N(x; mu_in, sd_in) - log N(x; mu_out, sd_out)."""
    return -0.5 * ((x - mu_in) / sd_in) ** 2 - np.log(sd_in) + 0.5 * ((x - mu_out) / sd_out) ** 2 + np.log(sd_out)


def tpr_at_fpr(positive: np.ndarray, negative: np.ndarray, fpr: float) -> float:
    """Fraction of positives scoring above the threshold that lets through ``fpr`` of the negatives."""
    threshold = np.quantile(negative, 1.0 - fpr, method="higher")
    return float((positive > threshold).mean())


def attack_summary(positive: np.ndarray, negative: np.ndarray) -> dict[str, float]:
    """AUC and TPR at 0.1% and 1% FPR of scores where higher means "positive"."""
    labels = np.concatenate([np.ones(len(positive)), np.zeros(len(negative))])
    return {
        "auc": float(roc_auc_score(labels, np.concatenate([positive, negative]))),
        "tpr@0.1%fpr": tpr_at_fpr(positive, negative, 0.001),
        "tpr@1%fpr": tpr_at_fpr(positive, negative, 0.01),
    }


def shadow_pool(train: Dataset, test: Dataset) -> Dataset:
    """Every row of the split, train then test: the population shadow models sample from."""
    return concat([train, test], name=f"{train.name}-pool")


def shadow_members(rows: int, k: int, seed: int) -> np.ndarray:
    """[k, rows] booleans: the random half of the pool each shadow model trains on."""
    rng = np.random.default_rng(seed)
    members = np.zeros((k, rows), dtype=bool)
    for i in range(k):
        members[i, rng.permutation(rows)[: rows // 2]] = True
    return members


def train_shadow(
    template: torch.nn.Module, pool: Dataset, members: np.ndarray, recipe: TrainConfig, seed: int, index: int, device
) -> np.ndarray:
    """Shadow ``index``: a re-initialised copy of ``template`` trained on its half of the pool;
    returns its logit-scaled confidence on every pool row. A function of its arguments only, so
    the bench runner can train shadows as independent executor jobs."""
    shadow = fresh_copy(template, seed=seed * 1000 + index)
    rows = torch.from_numpy(np.nonzero(members[index])[0])
    fit(shadow, pool.subset(rows), recipe.model_copy(update={"seed": index}), device=device)
    return logit_confidence(predict(shadow, pool, device=device), pool.y).numpy()


def _shadow_key(model: torch.nn.Module, k: int, recipe: TrainConfig, seed: int) -> tuple:
    return (k, recipe.model_dump_json(), seed, repr(getattr(model, "obliviate_spec", type(model).__name__)))


def remember_shadows(
    task: UnlearningTask, model: torch.nn.Module, k: int, recipe: TrainConfig, seed: int, scores: np.ndarray
) -> None:
    """Hand ``lira`` the [k, pool rows] scores of shadows trained elsewhere (same settings)."""
    members = shadow_members(scores.shape[1], k, seed)
    _SHADOW_CACHE.setdefault(task, {})[_shadow_key(model, k, recipe, seed)] = (scores, members)


def shadow_scores(
    task: UnlearningTask, model: torch.nn.Module, k: int, recipe: TrainConfig, seed: int, device
) -> tuple[np.ndarray, np.ndarray]:
    """Confidences [k, rows] of ``k`` shadow models on the pool, and which rows each trained on.

    Cached per task and settings, so every model of one evaluation shares the same shadows.
    """
    per_task = _SHADOW_CACHE.setdefault(task, {})
    key = _shadow_key(model, k, recipe, seed)
    if key not in per_task:
        pool = shadow_pool(task.train, task.test)
        members = shadow_members(len(pool), k, seed)
        scores = np.stack([train_shadow(model, pool, members, recipe, seed, i, device) for i in range(k)])
        per_task[key] = (scores, members)
    return per_task[key]


def lira_settings(options: dict) -> tuple[int, TrainConfig]:
    """Number of shadow models and their recipe from ``options["lira"]``."""
    opts = options.get("lira", {})
    k = int(opts.get("shadow_models", DEFAULT_SHADOW_MODELS))
    if k < 2:
        raise ValueError(f"lira needs at least 2 shadow models, got {k}")
    return k, TrainConfig.model_validate(opts.get("recipe", {}))


def lira_scores(target: np.ndarray, shadows: np.ndarray, members: np.ndarray) -> np.ndarray:
    """Per-row log likelihood ratio member vs non-member of target confidences [rows]."""

    def fit(mask):
        count = mask.sum(0)
        mu = np.where(count > 0, (shadows * mask).sum(0) / np.maximum(count, 1), np.nan)
        mu = np.where(np.isnan(mu), np.nanmean(mu), mu)  # rows no shadow saw (or all saw): the group mean
        resid = (shadows - mu)[mask]
        return mu, max(float(resid.std()) if resid.size > 1 else 1.0, 1e-3)

    mu_in, sd_in = fit(members)
    mu_out, sd_out = fit(~members)
    return gaussian_log_ratio(target, mu_in, sd_in, mu_out, sd_out)


@metric(
    "lira",
    direction="reference",
    kinds=("classification",),
    default=False,
    description="LiRA with shadow models: AUC / TPR at low FPR of forget (member?) vs test rows",
)
def lira(ctx: MetricContext) -> dict[str, float]:
    k, recipe = lira_settings(ctx.options)
    shadows, members = shadow_scores(ctx.task, ctx.model, k, recipe, ctx.seed, ctx.device)
    task = ctx.task
    n_train = len(task.train)
    rows = {"forget": task.forget_idx.numpy(), "test": n_train + np.arange(len(task.test))}
    result = {}
    parts = {}
    for view, idx in rows.items():
        target = logit_confidence(ctx.outputs[view], ctx.labels(view)).numpy()
        parts[view] = lira_scores(target, shadows[:, idx], members[:, idx])
    result.update(attack_summary(parts["forget"], parts["test"]))
    result["shadow_models"] = float(k)
    return result


def ulira(unlearned: np.ndarray, retrained: np.ndarray) -> dict[str, float]:
    """U-LiRA from [N, n] and [M, n] confidence arrays (models x forget examples).

    Each model in turn is held out; per-example Gaussians are fit to the remaining unlearned
    and retrained models; the held-out model's log ratio "unlearned vs retrained" scores each
    of its examples. Returns AUC (0.5 = unlearning indistinguishable from retraining) and TPR
    at low FPR, over all (model, example) pairs, with the number of models used.
    """
    unlearned, retrained = np.asarray(unlearned, float), np.asarray(retrained, float)
    if min(len(unlearned), len(retrained)) < 3:
        raise ValueError("U-LiRA needs at least 3 unlearned and 3 retrained models (leave-one-out fits)")

    def loo_stats(group: np.ndarray):
        n = len(group)
        total, total_sq = group.sum(0), (group**2).sum(0)
        mu = (total - group) / (n - 1)  # [n, examples]: mean of the others
        var = ((total_sq - group**2) - (n - 1) * mu**2) / (n - 2)
        return mu, np.sqrt(np.maximum(var, 1e-6))

    def full_stats(group: np.ndarray):
        return group.mean(0), np.maximum(group.std(0, ddof=1), 1e-3)

    mu_u_loo, sd_u_loo = loo_stats(unlearned)
    mu_r_loo, sd_r_loo = loo_stats(retrained)
    mu_u, sd_u = full_stats(unlearned)
    mu_r, sd_r = full_stats(retrained)
    sd_u_loo, sd_r_loo = np.maximum(sd_u_loo, 1e-3), np.maximum(sd_r_loo, 1e-3)
    pos = gaussian_log_ratio(unlearned, mu_u_loo, sd_u_loo, mu_r, sd_r).ravel()
    neg = gaussian_log_ratio(retrained, mu_u, sd_u, mu_r_loo, sd_r_loo).ravel()
    return {**attack_summary(pos, neg), "models": float(len(unlearned) + len(retrained))}
