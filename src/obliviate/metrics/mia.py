"""Membership inference attacks, each named for its feature and attacker (DESIGN section 5)."""

from __future__ import annotations

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold, cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from obliviate.metrics.base import MetricContext, metric
from obliviate.training import per_example_loss


def softmax_entropy(logits: torch.Tensor) -> np.ndarray:
    logp = torch.log_softmax(logits, dim=1)
    return (-(logp.exp() * logp).sum(1)).numpy()


def attack_model() -> object:
    """The attacker of the 1-D MIAs: a class-balanced logistic regression on a standardised feature."""
    return make_pipeline(StandardScaler(), LogisticRegression(class_weight="balanced"))


def entropy_attack(retain: np.ndarray, test: np.ndarray, forget: np.ndarray) -> float:
    """Fit on retain (member) vs test (non-member) features; percent of forget called member."""
    X = np.concatenate([retain, test]).reshape(-1, 1)
    y = np.concatenate([np.ones(len(retain)), np.zeros(len(test))])
    clf = attack_model().fit(X, y)
    return float(clf.predict(forget.reshape(-1, 1)).mean() * 100)


def separability_cv(forget: np.ndarray, test: np.ndarray, seed: int = 0, folds: int = 5) -> float:
    """Cross-validated accuracy (percent) of telling forget from test rows by a 1-D feature.

    The larger group is subsampled to the smaller one's size so 50 means indistinguishable.
    """
    rng = np.random.default_rng(seed)
    n = min(len(forget), len(test))
    if n < 2:
        return float("nan")
    f = forget[rng.permutation(len(forget))[:n]]
    t = test[rng.permutation(len(test))[:n]]
    X = np.concatenate([f, t]).reshape(-1, 1)
    y = np.concatenate([np.ones(n), np.zeros(n)])
    cv = StratifiedKFold(n_splits=min(folds, n), shuffle=True, random_state=seed)
    return float(cross_val_score(attack_model(), X, y, cv=cv).mean() * 100)


@metric(
    "mia_entropy",
    direction="reference",
    kinds=("classification",),
    description="percent of forget rows an entropy attack (retain vs test, logistic) calls member",
)
def mia_entropy(ctx: MetricContext) -> float:
    o = ctx.outputs
    return entropy_attack(softmax_entropy(o["retain"]), softmax_entropy(o["test"]), softmax_entropy(o["forget"]))


@metric(
    "mia_loss_cv",
    direction="reference",
    description="cross-validated accuracy (%) of telling forget rows from never-seen rows of the same kind by "
    "loss; 50 = they look never seen, above 50 = told apart (remembered, or pushed out harder than unseen rows)",
)
def mia_loss_cv(ctx: MetricContext) -> float:
    """Never-seen rows of the same kind are ``task.held_out_view``: the forgotten class's test rows for
    class forgetting, all test rows for random rows. Against all test rows a model that forgot a class
    would score near 100 (its forget rows have high loss, test rows of other classes low) and the
    original near 50, which reads backwards."""
    kind = ctx.task.kind
    view = ctx.task.held_out_view
    forget = per_example_loss(ctx.outputs["forget"], ctx.labels("forget"), kind).numpy()
    held_out = per_example_loss(ctx.outputs[view], ctx.labels(view), kind).numpy()
    return separability_cv(forget, held_out, seed=ctx.seed)
