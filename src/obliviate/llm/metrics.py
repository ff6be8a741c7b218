"""What a causal LM still knows about the forgotten people, and what it kept.

Definitions follow TOFU (Maini et al. 2024), MUSE (Shi et al. 2024) and OpenUnlearning:

- normalised probability of an answer ``a`` to ``q``: ``P(a|q) ** (1/|a|)`` (``|a|`` in tokens);
- truth ratio (TOFU): ``R = mean_j P(perturbed_j|q)**(1/|perturbed_j|) / P(paraphrased|q)**(1/|paraphrased|)``;
  near 1 when the model cannot tell the true fact from wrong ones, near 0 when it knows it;
- forget quality (TOFU): p-value of the two-sample Kolmogorov-Smirnov test between the
  unlearned model's and the retain model's truth ratios on the forget set (high = alike);
- ROUGE-L recall of the greedy answer against the true answer (``rouge-score``, stemmed);
- extraction strength (OpenUnlearning, after Carlini et al.): ``1 - k/|a|`` with ``k`` the
  shortest answer prefix after which greedy decoding reproduces the rest of the answer;
- model utility (TOFU): harmonic mean of retain probability, retain ROUGE-L, retain
  ``max(0, 1 - R)``, and the same three on the world-knowledge probe, whose probability is
  ``P(true|q)`` over the sum of ``P(option|q)`` for the true and the perturbed answers;
- membership attacks (MUSE): a score per answer where higher means "not trained on": loss
  (mean token NLL), zlib (NLL over the zlib-compressed length of the text), min-k% (minus the mean
  of the lowest k% token log-probabilities, k = 0.4 as OpenUnlearning) and min-k%++ (the same on
  token log-probabilities standardised by the mean and standard deviation of the model's
  log-probability at that position); reported as the ROC AUC of telling never-seen (holdout)
  from forget answers: about 0.5 for a model that never saw either, near 1 for the original;
- privleak (MUSE): ``100 * (AUC_model - AUC_retain) / AUC_retain`` for min-k%; 0 is ideal.
"""

from __future__ import annotations

import math
import zlib
from dataclasses import dataclass

import numpy as np
import torch
from scipy.stats import hmean, ks_2samp
from sklearn.metrics import roc_auc_score
from torch import nn

from obliviate.adapter import model_device
from obliviate.llm.data import QA, LMTask
from obliviate.llm.model import prompt, qa_batch, token_logprobs

MIN_K = 0.4


@dataclass
class AnswerScores:
    """Per answer: summed log-probability, token count, and the four membership scores."""

    logprob: np.ndarray
    length: np.ndarray
    loss: np.ndarray
    zlib: np.ndarray
    min_k: np.ndarray
    min_kpp: np.ndarray
    extraction: np.ndarray


def min_k_score(values: np.ndarray, k: float = MIN_K) -> float:
    """Minus the mean of the lowest ``ceil(k * n)`` values (token log-probabilities)."""
    n = max(1, math.ceil(k * len(values)))
    return float(-np.sort(values)[:n].mean())


@torch.no_grad()
def answer_scores(
    model: nn.Module, tokenizer, rows: list[QA], answers: list[str] | None = None, batch_size: int = 64
) -> AnswerScores:
    """Score ``answers`` (default: the rows' own) given the rows' questions, in batches."""
    model.eval()
    answers = [qa.answer for qa in rows] if answers is None else answers
    cols: dict[str, list[float]] = {f: [] for f in AnswerScores.__dataclass_fields__}
    for start in range(0, len(rows), batch_size):
        chunk, texts = rows[start : start + batch_size], answers[start : start + batch_size]
        batch = qa_batch(tokenizer, chunk, texts, model_device(model))
        picked, mask, logits = token_logprobs(model, batch)
        logp = torch.log_softmax(logits.float(), dim=-1)
        probs = logp.exp()
        mu = (probs * logp).sum(-1)
        sigma = ((probs * logp.square()).sum(-1) - mu.square()).clamp(min=1e-12).sqrt()
        standard = (picked - mu) / sigma
        correct = (logits.argmax(-1) == batch["labels"][:, 1:]) | ~mask
        picked, standard, mask, correct = (t.cpu() for t in (picked, standard, mask, correct))
        for row, text in enumerate(texts):
            m = mask[row]
            tokens = picked[row][m].numpy()
            n = len(tokens)
            cols["logprob"].append(float(tokens.sum()))
            cols["length"].append(n)
            cols["loss"].append(float(-tokens.mean()))
            cols["zlib"].append(float(-tokens.mean()) / len(zlib.compress(text.encode("utf-8"))))
            cols["min_k"].append(min_k_score(tokens))
            cols["min_kpp"].append(min_k_score(standard[row][m].numpy()))
            wrong = torch.nonzero(~correct[row][m]).flatten()
            cols["extraction"].append(1.0 - (int(wrong[-1]) + 1 if len(wrong) else 0) / n)
    return AnswerScores(**{k: np.asarray(v, dtype=float) for k, v in cols.items()})


def normalized_prob(scores: AnswerScores) -> np.ndarray:
    """``P(a|q) ** (1/|a|)`` per answer."""
    return np.exp(scores.logprob / scores.length)


def _option_probs(
    model: nn.Module, tokenizer, rows: list[QA], normalize: bool = True
) -> list[tuple[float, np.ndarray]]:
    """Probability of each row's paraphrased answer and of its perturbed answers, normalised by
    length (``P(a|q) ** (1/|a|)``) or not."""
    repeated = [qa for qa in rows for _ in range(1 + len(qa.perturbed))]
    texts = [text for qa in rows for text in (qa.paraphrased, *qa.perturbed)]
    scores = answer_scores(model, tokenizer, repeated, texts)
    probs = normalized_prob(scores) if normalize else np.exp(scores.logprob)
    out, at = [], 0
    for qa in rows:
        out.append((probs[at], probs[at + 1 : at + 1 + len(qa.perturbed)]))
        at += 1 + len(qa.perturbed)
    return out


def _with_options(rows: list[QA]) -> list[QA]:
    return [qa for qa in rows if qa.paraphrased and qa.perturbed]


def truth_ratios(model: nn.Module, tokenizer, rows: list[QA]) -> np.ndarray:
    """TOFU truth ratio per row that has a paraphrased and perturbed answers (others skipped)."""
    return np.asarray([pert.mean() / para for para, pert in _option_probs(model, tokenizer, _with_options(rows))])


def forget_quality(ratios: np.ndarray, reference_ratios: np.ndarray) -> float:
    """KS-test p-value between two truth-ratio samples (TOFU's forget quality)."""
    return float(ks_2samp(ratios, reference_ratios).pvalue)


def choice_prob(model: nn.Module, tokenizer, rows: list[QA]) -> np.ndarray:
    """``P(true|q) / sum of P(option|q)`` over the paraphrased (true) and the perturbed answers,
    unnormalised, as TOFU's multiple-choice probability on its world-facts set."""
    options = _option_probs(model, tokenizer, _with_options(rows), normalize=False)
    return np.asarray([para / (para + pert.sum()) for para, pert in options])


@torch.no_grad()
def generate(
    model: nn.Module, tokenizer, questions: list[str], max_new_tokens: int = 24, batch_size: int = 64
) -> list[str]:
    """Greedy answers to ``questions`` (left-padded prompts, stop at end-of-text)."""
    model.eval()
    out = []
    for start in range(0, len(questions), batch_size):
        encoded = [
            tokenizer(prompt(q), add_special_tokens=True)["input_ids"] for q in questions[start : start + batch_size]
        ]
        width = max(map(len, encoded))
        ids = torch.full((len(encoded), width), tokenizer.pad_token_id, dtype=torch.long)
        mask = torch.zeros_like(ids)
        for row, x in enumerate(encoded):
            ids[row, width - len(x) :] = torch.tensor(x)
            mask[row, width - len(x) :] = 1
        gen = model.generate(
            input_ids=ids.to(model_device(model)),
            attention_mask=mask.to(model_device(model)),
            max_new_tokens=max_new_tokens,
            do_sample=False,
            pad_token_id=tokenizer.pad_token_id,
            eos_token_id=tokenizer.eos_token_id,
        )
        out += tokenizer.batch_decode(gen[:, width:].cpu(), skip_special_tokens=True)
    return [text.strip() for text in out]


def rouge_l_recall(references: list[str], candidates: list[str]) -> np.ndarray:
    """ROUGE-L recall (longest common subsequence / reference length), stemmed, as TOFU."""
    from rouge_score import rouge_scorer

    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)
    return np.asarray([scorer.score(r, c)["rougeL"].recall for r, c in zip(references, candidates, strict=True)])


def rouge_recall(model: nn.Module, tokenizer, rows: list[QA]) -> np.ndarray:
    """ROUGE-L recall of each greedy answer against the true answer."""
    return rouge_l_recall([qa.answer for qa in rows], generate(model, tokenizer, [qa.question for qa in rows]))


def mia_auc(forget: np.ndarray, holdout: np.ndarray) -> float:
    """ROC AUC of telling holdout from forget answers by a score (higher = less likely seen)."""
    labels = np.r_[np.zeros(len(forget)), np.ones(len(holdout))]
    return float(roc_auc_score(labels, np.r_[forget, holdout]))


def model_utility(model: nn.Module, tokenizer, retain: list[QA], world: list[QA]) -> dict[str, float]:
    """TOFU model utility and its parts on ``retain`` (and ``world``, when given)."""
    parts = {
        "retain_prob": float(normalized_prob(answer_scores(model, tokenizer, retain)).mean()),
        "retain_rouge": float(rouge_recall(model, tokenizer, retain).mean()),
        "retain_truth": float(np.maximum(0, 1 - truth_ratios(model, tokenizer, retain)).mean()),
    }
    if world:
        parts |= {
            "world_prob": float(choice_prob(model, tokenizer, world).mean()),
            "world_rouge": float(rouge_recall(model, tokenizer, world).mean()),
            "world_truth": float(np.maximum(0, 1 - truth_ratios(model, tokenizer, world)).mean()),
        }
    values = [v for v in parts.values() if not math.isnan(v)]
    parts["model_utility"] = float(hmean(values)) if min(values) > 0 else 0.0
    return parts


MIAS = ("loss", "zlib", "min_k", "min_kpp")


def evaluate_lm(
    models: dict[str, nn.Module],
    tokenizer,
    task: LMTask,
    reference: str | None = "retain",
    max_retain: int = 300,
    seed: int = 0,
) -> dict[str, dict[str, float]]:
    """Every metric above for each model; forget quality and privleak need ``reference``.

    Retain metrics use a fixed random sample of at most ``max_retain`` retain facts.
    """
    rng = np.random.default_rng(seed)
    retain = [task.retain[i] for i in sorted(rng.permutation(len(task.retain))[:max_retain])]
    results: dict[str, dict[str, float]] = {}
    ratios: dict[str, np.ndarray] = {}
    for name, model in models.items():
        ratios[name] = truth_ratios(model, tokenizer, task.forget)
        forget = answer_scores(model, tokenizer, task.forget)
        row = {
            "forget_truth_ratio": float(ratios[name].mean()) if len(ratios[name]) else math.nan,
            "forget_rouge": float(rouge_recall(model, tokenizer, task.forget).mean()),
            "forget_prob": float(normalized_prob(forget).mean()),
            "extraction_strength": float(forget.extraction.mean()),
        }
        if task.holdout:
            holdout = answer_scores(model, tokenizer, task.holdout)
            row |= {f"mia_{m}": mia_auc(getattr(forget, m), getattr(holdout, m)) for m in MIAS}
        row |= model_utility(model, tokenizer, retain, task.world)
        results[name] = row
    if reference is not None and reference in models:
        for name, row in results.items():
            row["forget_quality"] = forget_quality(ratios[name], ratios[reference]) if len(ratios[name]) else math.nan
            if "mia_min_k" in row:
                base = results[reference]["mia_min_k"]
                row["privleak"] = 100 * (row["mia_min_k"] - base) / base
    return results
