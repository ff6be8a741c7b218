"""``verify``: did the model forget, judged without a retrained model.

A user serving a deletion request has no retrained model to compare with (retraining is what
they avoid). What they do have are rows the model never saw: the test rows, and for a forgotten
class or range the test rows of that class. A model that forgot its forget rows treats them like
those never-seen rows of the same kind, so every check compares the two groups:

- ``mia_auc``: AUC of telling forget rows from held-out rows by per-example loss, read as "forget
  rows have the lower loss" (0.5 = indistinguishable; above: still remembered; below: the rows
  were pushed out harder than unseen rows, which is itself a tell);
- ``accuracy_gap``: accuracy on forget rows minus accuracy on held-out rows (points);
- ``mia_entropy_gap``: an entropy attack (logistic, fit on retain vs test rows as ``mia_entropy``)
  calls forget rows members at the rate it calls held-out rows members (points apart);
- ``class_recognised`` (class forgetting): accuracy on held-out rows of the forgotten classes;
- ``output_js``: Jensen-Shannon divergence (nats) of the mean predicted distribution on forget
  rows vs held-out rows, in the spirit of RF-JSD;
- ``utility``: retained-class accuracy lost against the original (points; regression: percent
  more error), when the original is given.

Every check carries a bootstrap interval over rows and a one-line reason, and is
``inconclusive`` when it rests on fewer than ``min_rows`` rows: with five forget rows accuracy
moves in 20-point steps, which is noise, not evidence. Thresholds live in ``VerifyConfig``.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Literal

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field
from rich.table import Table
from scipy.spatial.distance import jensenshannon
from scipy.stats import bootstrap, rankdata
from torch import Tensor, nn

from obliviate.forget import UnlearningTask
from obliviate.metrics.mia import attack_model, softmax_entropy
from obliviate.training import per_example_loss

Status = Literal["pass", "fail", "inconclusive", "skipped"]
ENTROPY_FIT_ROWS = 2000


class VerifyConfig(BaseModel):
    """Thresholds of the verdict. Set on digits and MNIST-5k (docs/verification.md shows the
    calibration against retraining); each is the largest deviation that still passes."""

    model_config = ConfigDict(extra="forbid")

    mia_auc: float = Field(0.1, gt=0, le=0.5, description="allowed |AUC - 0.5| of forget vs held-out loss")
    accuracy_gap: float = Field(5.0, gt=0, description="allowed |accuracy(forget) - accuracy(held-out)|, points")
    mia_entropy_gap: float = Field(10.0, gt=0, description="allowed |member rate forget - held-out|, points")
    class_accuracy: float = Field(10.0, gt=0, description="largest held-out accuracy (%) of a forgotten class")
    output_js: float = Field(0.05, gt=0, description="largest JS (nats) of mean outputs, forget vs held-out")
    utility_drop: float = Field(5.0, gt=0, description="retained-class accuracy (points) the model may lose")
    utility_error_increase: float = Field(10.0, gt=0, description="regression: percent more retained error allowed")
    min_rows: int = Field(30, ge=2, description="fewer forget or held-out rows than this: inconclusive")
    bootstrap: int = Field(200, ge=0, description="bootstrap resamples for each interval (0: no intervals)")
    confidence: float = Field(0.95, gt=0, lt=1)


@dataclass
class Check:
    """One piece of evidence. ``severity`` is the deviation in units of the threshold: <= 1 passes."""

    name: str
    status: Status
    value: float
    low: float
    high: float
    bound: str
    reason: str
    severity: float


@dataclass
class Verdict:
    """The checks on one model; ``passed`` only when every check that applies passed."""

    scenario: str
    forget_rows: int
    held_out_rows: int
    checks: list[Check] = field(default_factory=list)

    @property
    def status(self) -> Status:
        states = {c.status for c in self.checks}
        if "fail" in states:
            return "fail"
        if "inconclusive" in states or "pass" not in states:
            return "inconclusive"
        return "pass"

    @property
    def passed(self) -> bool:
        return self.status == "pass"

    @property
    def score(self) -> float:
        """The worst check's severity (0 = like never-seen rows, 1 = at a threshold): one number
        to rank models and to calibrate against the gap to retraining."""
        values = [c.severity for c in self.checks if c.status != "skipped" and not math.isnan(c.severity)]
        return max(values) if values else float("nan")

    def check(self, name: str) -> Check | None:
        return next((c for c in self.checks if c.name == name), None)

    @property
    def reason(self) -> str:
        """One line: why it failed or is undecided, or that it passed."""
        bad = [c for c in self.checks if c.status == self.status and self.status != "pass"]
        if not bad:
            return f"passed {sum(c.status == 'pass' for c in self.checks)} checks"
        return "; ".join(f"{c.name}: {c.reason}" for c in bad)

    def to_dict(self) -> dict:
        return {
            "status": self.status,
            "passed": self.passed,
            "score": self.score,
            "reason": self.reason,
            "scenario": self.scenario,
            "forget_rows": self.forget_rows,
            "held_out_rows": self.held_out_rows,
            "checks": [asdict(c) for c in self.checks],
        }

    def table(self, title: str | None = None) -> Table:
        table = Table(title=title or f"verdict: {self.status.upper()} (score {self.score:.2f}) · {self.reason}")
        for col in ("check", "status", "value", "interval", "passes when", "reason"):
            table.add_column(col, justify="right" if col in ("value", "interval") else "left")
        for c in self.checks:
            interval = "-" if math.isnan(c.low) else f"[{c.low:.3g}, {c.high:.3g}]"
            value = "-" if math.isnan(c.value) else f"{c.value:.3g}"
            table.add_row(c.name, c.status, value, interval, c.bound, c.reason)
        return table

    def __rich__(self) -> Table:
        return self.table()


def _interval(stat, samples: tuple[np.ndarray, ...], cfg: VerifyConfig, seed: int) -> tuple[float, float]:
    """Percentile bootstrap interval of ``stat`` over rows of each sample, resampled independently
    (a statistic of one sample that reads two arrays at the same rows is a paired one)."""
    if cfg.bootstrap == 0 or any(len(s) < 2 for s in samples):
        return float("nan"), float("nan")
    res = bootstrap(
        tuple(np.arange(len(s)) for s in samples),
        lambda *idx, axis=-1: stat(*(i.astype(np.int64) for i in idx)),
        vectorized=True,
        n_resamples=cfg.bootstrap,
        confidence_level=cfg.confidence,
        method="percentile",
        rng=np.random.default_rng(seed),
    )
    return float(res.confidence_interval.low), float(res.confidence_interval.high)


def _auc(lower: np.ndarray, higher: np.ndarray):
    """Vectorised over leading axes: P(a row of ``lower`` < a row of ``higher``), ties halved."""

    def stat(i, j):
        a, b = lower[i], higher[j]
        ranks = rankdata(np.concatenate([a, b], axis=-1), axis=-1)
        n, m = a.shape[-1], b.shape[-1]
        u = ranks[..., :n].sum(-1) - n * (n + 1) / 2  # pairs where the lower-group row is higher
        return 1.0 - u / (n * m)

    return stat


def _mean(values: np.ndarray) -> float:
    return float(values.mean()) if len(values) else math.nan


def _judge(
    name: str, value: float, ci: tuple[float, float], severity: float, bound: str, what: str, enough: bool
) -> Check:
    if math.isnan(value):
        return Check(name, "inconclusive", value, *ci, bound, f"{what} could not be measured", float("nan"))
    if not enough:
        return Check(name, "inconclusive", value, *ci, bound, f"{what} rests on too few rows to decide", severity)
    status: Status = "pass" if severity <= 1.0 else "fail"
    return Check(name, status, value, *ci, bound, what, severity)


def mia_auc_check(
    forget_loss: np.ndarray, held_loss: np.ndarray, cfg: VerifyConfig, seed: int, enough: bool, rows: str = "rows"
) -> Check:
    """Membership by loss: the AUC of telling forget from never-seen ``rows`` (0.5: no difference)."""
    stat = _auc(forget_loss, held_loss)
    n_f, n_h = len(forget_loss), len(held_loss)
    auc = float(stat(np.arange(n_f), np.arange(n_h))) if n_f and n_h else float("nan")
    return _judge(
        "mia_auc",
        auc,
        _interval(stat, (forget_loss, held_loss), cfg, seed),
        abs(auc - 0.5) / cfg.mia_auc,
        f"|AUC - 0.5| <= {cfg.mia_auc:g}",
        f"loss attack AUC {auc:.2f} (0.5 = forget {rows} look never seen; above: remembered)",
        enough,
    )


def mean_gap_check(
    name: str,
    forget: np.ndarray,
    held: np.ndarray,
    bound: float,
    what: str,
    cfg: VerifyConfig,
    seed: int,
    enough: bool,
) -> Check:
    """A per-row score (in points) on forget rows against never-seen rows: passes within ``bound``."""

    def gap(i, j):
        return forget[i].mean(-1) - held[j].mean(-1)

    value = float(forget.mean() - held.mean()) if len(forget) and len(held) else float("nan")
    return _judge(
        name,
        value,
        _interval(gap, (forget, held), cfg, seed),
        abs(value) / bound,
        f"|gap| <= {bound:g} points",
        what,
        enough,
    )


def verdict_from_outputs(
    task: UnlearningTask,
    outputs: dict[str, Tensor],
    original: dict[str, Tensor] | None = None,
    config: VerifyConfig | None = None,
    seed: int = 0,
) -> Verdict:
    """The verdict from cached outputs (``evaluation.model_outputs``) of the model and the original."""
    cfg = config or VerifyConfig()
    kind = task.kind
    f_out, f_y = outputs["forget"], task.forget.y
    h_out, h_y = outputs[task.held_out_view], getattr(task, task.held_out_view).y
    n_f, n_h = len(f_y), len(h_y)
    enough = min(n_f, n_h) >= cfg.min_rows
    verdict = Verdict(task.spec.scenario, n_f, n_h)
    checks = verdict.checks

    # membership: do forget rows have lower loss than never-seen rows of the same kind?
    lf = per_example_loss(f_out, f_y, kind).numpy().astype(np.float64)
    lh = per_example_loss(h_out, h_y, kind).numpy().astype(np.float64)
    checks.append(mia_auc_check(lf, lh, cfg, seed, enough))

    if kind == "classification":
        cf = (f_out.argmax(1) == f_y).numpy().astype(np.float64) * 100 if n_f else np.zeros(0)
        ch = (h_out.argmax(1) == h_y).numpy().astype(np.float64) * 100 if n_h else np.zeros(0)

        checks.append(
            mean_gap_check(
                "accuracy_gap",
                cf,
                ch,
                cfg.accuracy_gap,
                f"forget rows {_mean(cf):.1f}% vs never-seen rows {_mean(ch):.1f}%",
                cfg,
                seed,
                enough,
            )
        )
        checks.append(_entropy_check(outputs, f_out, h_out, cfg, seed, enough))
        if task.spec.scenario == "class":
            value = float(ch.mean()) if n_h else float("nan")
            checks.append(
                _judge(
                    "class_recognised",
                    value,
                    _interval(lambda j: ch[j].mean(-1), (ch,), cfg, seed),
                    value / cfg.class_accuracy,
                    f"<= {cfg.class_accuracy:g}% on held-out rows",
                    f"the forgotten class is recognised on {value:.1f}% of its never-seen rows",
                    n_h >= cfg.min_rows,
                )
            )
        pf = torch.softmax(f_out.double(), 1).numpy()
        ph = torch.softmax(h_out.double(), 1).numpy()

        def js(i, j):
            return jensenshannon(pf[i].mean(-2), ph[j].mean(-2), axis=-1) ** 2

        value = float(js(np.arange(n_f), np.arange(n_h))) if n_f and n_h else float("nan")
        checks.append(
            _judge(
                "output_js",
                value,
                _interval(js, (pf, ph), cfg, seed),
                value / cfg.output_js,
                f"<= {cfg.output_js:g} nats",
                f"mean outputs on forget vs never-seen rows differ by JS {value:.3f} nats",
                enough,
            )
        )

    checks.append(_utility(task, outputs, original, cfg, seed))
    return verdict


def _entropy_check(
    outputs: dict[str, Tensor], f_out: Tensor, h_out: Tensor, cfg: VerifyConfig, seed: int, enough: bool
) -> Check:
    """The entropy attack of ``mia_entropy`` (members: retain rows; non-members: test rows): a
    model that forgot calls forget rows members as often as never-seen rows of the same kind."""
    retain = outputs["retain"]
    if len(retain) > ENTROPY_FIT_ROWS:
        retain = retain[torch.randperm(len(retain), generator=torch.Generator().manual_seed(seed))[:ENTROPY_FIT_ROWS]]
    test = outputs["test"]
    X = np.concatenate([softmax_entropy(retain), softmax_entropy(test)]).reshape(-1, 1)
    y = np.concatenate([np.ones(len(retain)), np.zeros(len(test))])
    attacker = attack_model().fit(X, y)
    mf = attacker.predict(softmax_entropy(f_out).reshape(-1, 1)) * 100 if len(f_out) else np.zeros(0)
    mh = attacker.predict(softmax_entropy(h_out).reshape(-1, 1)) * 100 if len(h_out) else np.zeros(0)

    return mean_gap_check(
        "mia_entropy_gap",
        mf,
        mh,
        cfg.mia_entropy_gap,
        f"entropy attack calls {_mean(mf):.0f}% of forget rows members vs {_mean(mh):.0f}% of never-seen rows",
        cfg,
        seed,
        enough,
    )


def utility_drop_check(now: np.ndarray, before: np.ndarray, what: str, cfg: VerifyConfig, seed: int) -> Check:
    """A per-row score (in points) now against the original's on the same rows: passes when it
    fell by at most ``cfg.utility_drop``."""

    def drop(i):
        return before[i].mean(-1) - now[i].mean(-1)

    return _paired_utility(drop, now, cfg.utility_drop, f"drop <= {cfg.utility_drop:g} points", what, cfg, seed)


def _paired_utility(stat, now: np.ndarray, bound: float, rule: str, what: str, cfg: VerifyConfig, seed: int) -> Check:
    """The utility check from ``stat(rows)``, a loss of utility over the given rows paired with
    the original's (bootstrapped over rows): passes when it is at most ``bound``."""
    value = float(stat(np.arange(len(now)))) if len(now) else float("nan")
    interval = _interval(stat, (now,), cfg, seed)
    return _judge("utility", value, interval, max(value, 0.0) / bound, rule, what, len(now) >= cfg.min_rows)


def _utility(
    task: UnlearningTask, outputs: dict[str, Tensor], original: dict[str, Tensor] | None, cfg: VerifyConfig, seed: int
) -> Check:
    """Retained-class held-out performance against the original's, paired over the same rows."""
    y = task.retain_test.y
    if original is None:
        return Check("utility", "skipped", math.nan, math.nan, math.nan, "-", "no original model given", math.nan)
    if task.kind == "classification":
        now = (outputs["retain_test"].argmax(1) == y).numpy().astype(np.float64) * 100
        before = (original["retain_test"].argmax(1) == y).numpy().astype(np.float64) * 100
        what = f"retained-class accuracy {_mean(now):.1f}% vs original {_mean(before):.1f}%"
        return utility_drop_check(now, before, what, cfg, seed)
    now = per_example_loss(outputs["retain_test"], y, task.kind).numpy().astype(np.float64)
    before = per_example_loss(original["retain_test"], y, task.kind).numpy().astype(np.float64)

    def increase(i):
        return (now[i].mean(-1) / before[i].mean(-1) - 1) * 100

    rule = f"error increase <= {cfg.utility_error_increase:g}%"
    change = float(increase(np.arange(len(y)))) if len(y) else math.nan
    what = f"retained held-out error {change:+.1f}% against the original"
    return _paired_utility(increase, now, cfg.utility_error_increase, rule, what, cfg, seed)


def verify(
    model: nn.Module,
    task: UnlearningTask,
    original: nn.Module | None = None,
    *,
    config: VerifyConfig | None = None,
    seed: int = 0,
    device: str | torch.device = "cpu",
    **thresholds: float,
) -> Verdict:
    """Judge whether ``model`` forgot ``task``'s forget set, without a retrained model.

    ``original`` (the model before unlearning) enables the utility check. ``thresholds``
    override ``VerifyConfig`` fields by name, e.g. ``verify(m, task, utility_drop=1.0)``.
    """
    from obliviate.evaluation import model_outputs  # evaluation attaches verdicts, so import here

    cfg = VerifyConfig(**{**(config or VerifyConfig()).model_dump(), **thresholds})
    outputs = model_outputs(model, task, device)
    before = model_outputs(original, task, device) if original is not None else None
    return verdict_from_outputs(task, outputs, before, cfg, seed)
