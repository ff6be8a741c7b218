"""Causal language models in the pipeline: a version is a Hugging Face directory, requests name keys.

A causal-LM pipeline serves a local Hugging Face model directory (weights, config, tokenizer)
trained on a JSONL file of question/answer facts with a key per person (``obliviate.llm.data``).
Requests name keys; a batch forgets every fact of its keys with an LM method (NPO by default),
and the result is gated by ``verify_lm``: the forget facts against facts of people the model
never saw (the data set's ``holdout_keys``), and the retain facts against the parent model.

A version is a directory ``models/vNNNN/`` written by ``save_pretrained`` into a temporary
sibling and renamed into place; its sha256 (``dir_sha256``) covers every file's name and content,
so the cards, the pointer, the audit records and ``pipeline check`` vouch for it as they do for
a classifier's weights file. ``obliviate.llm`` (the ``llm`` extra) is imported only when such a
pipeline is used.
"""

from __future__ import annotations

import hashlib
import math
import os
import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import nn

from obliviate.checkpoint import file_sha256

LM_GATES = ("verdict_failed <= 0",)
"""Reference-free default for causal LMs: no check of ``verify_lm`` failed (forget facts look
never-seen by loss, by greedy answers and by truth ratios, retain answers kept within 5 ROUGE-L
points of the parent's). The truth-ratio check needs facts with paraphrased and perturbed
answers; where the facts file has none it is inconclusive, not failed. A check resting on too
few facts (under 30) is inconclusive, not failed; add
``verdict_inconclusive <= 0`` to refuse those too."""

MAX_SCORED = 300
"""Retain facts scored for the loss metrics (the first ones in the file), so a large file stays cheap."""


@dataclass
class CausalLM:
    """What a causal-LM version holds: the model and the tokenizer saved beside it."""

    model: nn.Module
    tokenizer: Any


def dir_sha256(path: str | Path) -> str:
    """One hash over a directory: every file's relative path and sha256, in name order. A
    symbolic link or an added, removed, renamed or edited file changes it."""
    root = Path(path)
    h = hashlib.sha256()
    for item in sorted(root.rglob("*"), key=lambda p: p.relative_to(root).as_posix()):
        rel = item.relative_to(root).as_posix()
        if item.is_symlink():
            h.update(f"{rel}\0link:{os.readlink(item)}\n".encode())
        elif item.is_file():
            h.update(f"{rel}\0{file_sha256(item)}\n".encode())
    return h.hexdigest()


@contextmanager
def quiet() -> Iterator[None]:
    """No ``transformers`` progress bars while versions are read and written: the pipeline's
    output is one line per batch (a service log, not a terminal)."""
    from transformers.utils import logging as hf_logging

    was = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was:
            hf_logging.enable_progress_bar()


def save_version(path: Path, lm: CausalLM) -> str:
    """Write ``lm`` to the new directory ``path`` through a temporary sibling (``.NAME.*.tmp``,
    which recovery deletes); returns the directory's sha256."""
    tmp = path.parent / f".{path.name}.{uuid.uuid4().hex[:8]}.tmp"
    try:
        with quiet():
            lm.model.save_pretrained(tmp)
        lm.tokenizer.save_pretrained(tmp)
        for item in tmp.rglob("*"):
            if item.is_file():
                with open(item, "rb") as fh:
                    os.fsync(fh.fileno())
        digest = dir_sha256(tmp)
        os.rename(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return digest


def load_version(path: Path) -> CausalLM:
    from obliviate.llm import load_causal_lm

    with quiet():
        model, tokenizer = load_causal_lm(path)
    return CausalLM(model.eval(), tokenizer)


def read_facts(path: str | Path, holdout_keys: list[str]) -> list:
    """The facts file's rows, after checking that the never-seen keys are in it."""
    from obliviate.llm import load_jsonl

    rows = load_jsonl(path)
    missing = sorted(set(holdout_keys) - {qa.key for qa in rows})
    if missing:
        raise ValueError(f"never-seen key(s) not in {path}: {', '.join(missing[:5])}")
    return rows


def check_keys(keys: list, facts: list, holdout_keys: list[str]) -> None:
    """A request may name only keys the model was trained on; raises ``ValueError`` naming the others."""
    names = {str(k) for k in keys}
    unknown = sorted(names - {qa.key for qa in facts})
    unseen = sorted(names & set(holdout_keys))
    if unknown:
        raise ValueError(f"unknown keys (not in the facts file): {_some(unknown)}")
    if unseen:
        raise ValueError(f"never-seen keys (the model was not trained on them): {_some(unseen)}")


def _some(keys: list[str]) -> str:
    return ", ".join(keys[:5]) + (f" and {len(keys) - 5} more" if len(keys) > 5 else "")


def fact_task(facts: list, keys: list[str], forgotten: list[str], holdout_keys: list[str]):
    """The ``LMTask`` of one batch: the facts of ``keys``, the facts the model still knows (all
    but the never-seen keys and keys forgotten earlier) and the never-seen facts."""
    from obliviate.llm import LMTask

    drop, hold = set(keys) | set(forgotten), set(holdout_keys)
    return LMTask(
        forget=[qa for qa in facts if qa.key in set(keys)],
        retain=[qa for qa in facts if qa.key not in drop | hold],
        holdout=[qa for qa in facts if qa.key in hold],
    )


def loss_metrics(lm: CausalLM, task) -> dict[str, float]:
    """Mean per-answer loss (token NLL) on forget, retain (a fixed sample) and never-seen facts."""
    from obliviate.llm.metrics import answer_scores

    out = {}
    for name, rows in (("forget", task.forget), ("retain", task.retain[:MAX_SCORED]), ("holdout", task.holdout)):
        out[f"{name}_loss"] = float(answer_scores(lm.model, lm.tokenizer, rows).loss.mean()) if rows else math.nan
    return out


def verdict_metrics(verdict) -> dict[str, float]:
    """Gate-able numbers from a ``verify_lm`` verdict: each check's value (``mia_auc``,
    ``rouge_gap`` in points, ``truth_ratio_ks`` a p-value, ``utility_drop`` in ROUGE-L points)
    and counts of failed, passed and inconclusive checks."""
    names = {"mia_auc": "mia_auc", "rouge_gap": "rouge_gap", "utility": "utility_drop"}
    out = {names.get(c.name, c.name): float(c.value) for c in verdict.checks}
    for status, name in (
        ("fail", "verdict_failed"),
        ("pass", "verdict_passed"),
        ("inconclusive", "verdict_inconclusive"),
    ):
        out[name] = float(sum(c.status == status for c in verdict.checks))
    return out
