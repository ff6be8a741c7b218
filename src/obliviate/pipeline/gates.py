"""Promotion gates: small comparisons over whatever metrics ``evaluate`` returned.

A gate reads ``LEFT OP RIGHT`` where each side is a number, a metric of the candidate
(``forget_acc``), or a metric of the model it replaces (``parent.forget_acc``), optionally
plus or minus a number: ``forget_acc <= test_acc + 2``, ``mia_entropy <= parent.mia_entropy``,
``zrf >= 0.6``. A prefix ``class:`` or ``random:`` limits a gate to batches that forget
whole classes or individual rows (what "forgotten" looks like differs: a model that never
saw a class does not predict it, while unseen rows of a known class are still mostly
classified right). Gates name metrics rather than being coded per metric, so a metric added
to the registry (ZRF, say) can gate promotion without touching this module. A gate whose
metric is missing or NaN fails: a check that could not be made is not a check passed.
"""

from __future__ import annotations

import math
import operator
import re
from dataclasses import dataclass

_OPS = {"<=": operator.le, ">=": operator.ge, "<": operator.lt, ">": operator.gt}
_TERM = r"\s*([A-Za-z_][\w.]*|-?\d+(?:\.\d+)?)\s*(?:([+-])\s*(\d+(?:\.\d+)?))?\s*"
_GATE = re.compile(rf"^\s*(?:(class|random)\s*:)?{_TERM}(<=|>=|<|>){_TERM}$")

DEFAULT_GATES = (
    "random: forget_acc <= test_acc + 2",
    "class: forget_acc <= 5",
    "mia_entropy <= parent.mia_entropy",
)
"""Reference-free defaults. Rows: they are recognised no better than unseen test rows (within
2 points). Classes: the forgotten class is (almost) never predicted, as by a model that never
saw it. Both: an entropy membership attack calls no more forgotten rows members than it did
on the model before the request."""


class GateError(ValueError):
    """A gate expression that cannot be parsed."""


@dataclass(frozen=True)
class Gate:
    text: str

    def __post_init__(self) -> None:
        if not _GATE.match(self.text):
            raise GateError(f"cannot read gate {self.text!r}; write e.g. 'forget_acc <= test_acc + 2' or 'zrf >= 0.5'")

    def applies(self, scenario: str) -> bool:
        only = _GATE.match(self.text).group(1)
        return only is None or only == scenario

    def check(self, metrics: dict[str, float], parent: dict[str, float]) -> str | None:
        """None when the gate holds, else the reason (with the numbers) it does not."""
        _, a, sa, na, op, b, sb, nb = _GATE.match(self.text).groups()
        try:
            left = _value(a, sa, na, metrics, parent)
            right = _value(b, sb, nb, metrics, parent)
        except KeyError as exc:
            return f"gate '{self.text}': metric {exc.args[0]!r} was not measured"
        if math.isnan(left) or math.isnan(right):
            return f"gate '{self.text}': a metric is NaN"
        if not _OPS[op](left, right):
            return f"gate '{self.text}' failed: {left:.4g} {op} {right:.4g} is false"
        return None


def _value(term: str, sign: str | None, num: str | None, metrics: dict, parent: dict) -> float:
    try:
        base = float(term)
    except ValueError:
        source, key = (parent, term[len("parent.") :]) if term.startswith("parent.") else (metrics, term)
        if key not in source:
            raise KeyError(term) from None
        base = float(source[key])
    if sign is None:
        return base
    return base + float(num) if sign == "+" else base - float(num)


def check_gates(gates: list[str], scenario: str, metrics: dict[str, float], parent: dict[str, float]) -> list[str]:
    """Reasons for every failing gate that applies to the batch's ``scenario`` (empty list: promote)."""
    applicable = [Gate(g) for g in gates if Gate(g).applies(scenario)]
    return [r for r in (g.check(metrics, parent) for g in applicable) if r is not None]
