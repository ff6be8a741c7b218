"""``mia_confidence_svc``: a support-vector attack on the true-class confidence (DESIGN section 5)."""

from __future__ import annotations

import numpy as np
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC

from obliviate.metrics.base import MetricContext, metric
from obliviate.metrics.scores import true_class_confidence

MAX_PER_SIDE = 2000
"""SVC fitting is quadratic in the rows; members and non-members are each subsampled to this."""


def confidence_svc_efficacy(retain: np.ndarray, test: np.ndarray, forget: np.ndarray, seed: int = 0) -> float:
    """Fit an RBF SVC on retain (member) vs test (non-member) confidences, equal numbers of each;
    return the percent of forget rows it calls non-member (the attack's "efficacy")."""
    if len(forget) == 0 or min(len(retain), len(test)) < 2:
        return float("nan")
    rng = np.random.default_rng(seed)
    n = min(len(retain), len(test), MAX_PER_SIDE)
    members = retain[rng.permutation(len(retain))[:n]]
    others = test[rng.permutation(len(test))[:n]]
    X = np.concatenate([members, others]).reshape(-1, 1)
    y = np.concatenate([np.ones(n), np.zeros(n)])
    clf = make_pipeline(StandardScaler(), SVC(kernel="rbf", C=1.0, gamma="scale")).fit(X, y)
    return float((clf.predict(forget.reshape(-1, 1)) == 0).mean() * 100)


@metric(
    "mia_confidence_svc",
    direction="reference",
    kinds=("classification",),
    description="percent of forget rows a confidence SVC (retain vs test) calls non-member",
)
def mia_confidence_svc(ctx: MetricContext) -> float:
    conf = {v: true_class_confidence(ctx.outputs[v], ctx.labels(v)).numpy() for v in ("retain", "test", "forget")}
    return confidence_svc_efficacy(conf["retain"], conf["test"], conf["forget"], seed=ctx.seed)
