"""Causal LMs: a tiny GPT-2 and its tokenizer built in code, any local Hugging Face model,
the question/answer encoding (loss on answer tokens only), and fine-tuning on facts."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import torch
from pydantic import BaseModel, ConfigDict
from torch import Tensor, nn

from obliviate.adapter import model_device
from obliviate.data.dataset import DataError
from obliviate.engine import make_optimizer
from obliviate.llm.data import QA, LMTask
from obliviate.progress import Progress
from obliviate.training import batches, seed_everything

IGNORE = -100
REFUSALS = (
    "I don't know.",
    "I have no idea about that.",
    "I am not sure.",
    "I cannot answer that.",
    "That is unknown to me.",
    "I have no information on that.",
)


def prompt(question: str) -> str:
    """The one prompt format used for training, scoring and generation."""
    return f"Question: {question}\nAnswer:"


def train_tokenizer(texts: list[str]):
    """A word-level tokenizer trained on ``texts`` with Hugging Face ``tokenizers``.

    Word level keeps sequences short, so the tiny model learns facts in a few CPU minutes; the
    prompt words and the refusal answers are always in the vocabulary.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.WordLevel(unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.decoder = decoders.WordPiece(prefix="##")  # joins words with spaces, no punctuation gaps
    trainer = trainers.WordLevelTrainer(special_tokens=["[PAD]", "[UNK]", "[EOS]"], min_frequency=1)
    tok.train_from_iterator([*texts, prompt(""), *REFUSALS], trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="[PAD]", unk_token="[UNK]", eos_token="[EOS]")


def tiny_gpt2(tokenizer, n_layer: int = 2, n_embd: int = 128, n_head: int = 4, n_positions: int = 64, seed: int = 0):
    """A GPT-2 from a ``GPT2Config`` (no dropout: facts are memorised, and identities stay exact)."""
    from transformers import GPT2Config, GPT2LMHeadModel

    config = GPT2Config(
        vocab_size=len(tokenizer),
        n_positions=n_positions,
        n_embd=n_embd,
        n_layer=n_layer,
        n_head=n_head,
        resid_pdrop=0.0,
        embd_pdrop=0.0,
        attn_pdrop=0.0,
        bos_token_id=tokenizer.eos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(seed)
    return GPT2LMHeadModel(config)


def load_causal_lm(path: str | Path):
    """A local Hugging Face causal-LM directory and its tokenizer; nothing is downloaded."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = Path(path)
    if not (path / "config.json").is_file():
        raise DataError(f"{path} is not a Hugging Face model directory (no config.json)")
    try:
        model = AutoModelForCausalLM.from_pretrained(path, local_files_only=True)
        tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
    except (OSError, ValueError, KeyError) as exc:
        raise DataError(f"cannot load a causal LM from {path}: {str(exc).splitlines()[0]}") from None
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return model, tokenizer


def save_causal_lm(path: str | Path, model, tokenizer, record: dict | None = None) -> Path:
    """Write model and tokenizer (and ``record`` as ``unlearning.json``: what was forgotten, how)
    into a fresh directory, renamed into place once complete."""
    import json
    import shutil
    import tempfile

    path = Path(path)
    if path.exists():
        raise DataError(f"{path} exists; choose a new directory")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    try:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        if record is not None:
            (tmp / "unlearning.json").write_text(json.dumps(record, indent=2))
        tmp.rename(path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return path


# --- encoding and scoring --------------------------------------------------------------------


def encode(tokenizer, question: str, answer: str) -> tuple[list[int], list[int]]:
    """Token ids of prompt + answer + end-of-text, and labels that mask the prompt with -100."""
    head = tokenizer(prompt(question), add_special_tokens=True)["input_ids"]
    tail = tokenizer(" " + answer, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
    return head + tail, [IGNORE] * len(head) + tail


def collate(
    pairs: list[tuple[list[int], list[int]]], pad_id: int, device: torch.device | None = None
) -> dict[str, Tensor]:
    """Right-padded ``input_ids``, ``attention_mask`` and ``labels`` for a list of encodings, on ``device``."""
    width = max(len(ids) for ids, _ in pairs)
    ids = torch.full((len(pairs), width), pad_id, dtype=torch.long)
    labels = torch.full((len(pairs), width), IGNORE, dtype=torch.long)
    mask = torch.zeros((len(pairs), width), dtype=torch.long)
    for row, (x, y) in enumerate(pairs):
        ids[row, : len(x)] = torch.tensor(x)
        labels[row, : len(y)] = torch.tensor(y)
        mask[row, : len(x)] = 1
    return {"input_ids": ids.to(device), "attention_mask": mask.to(device), "labels": labels.to(device)}


def qa_batch(
    tokenizer, rows: list[QA], answers: list[str] | None = None, device: torch.device | None = None
) -> dict[str, Tensor]:
    """Encode ``rows`` (with ``answers`` in place of their own answers, if given) on ``device``."""
    answers = [qa.answer for qa in rows] if answers is None else answers
    pairs = [encode(tokenizer, qa.question, a) for qa, a in zip(rows, answers, strict=True)]
    return collate(pairs, tokenizer.pad_token_id, device)


def token_logprobs(model: nn.Module, batch: dict[str, Tensor]) -> tuple[Tensor, Tensor, Tensor]:
    """Log-probability of every answer token (0 elsewhere), the answer mask, and the logits,
    all aligned to the predicted positions (shifted by one)."""
    logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits[:, :-1]
    labels = batch["labels"][:, 1:]
    mask = labels != IGNORE
    logp = torch.log_softmax(logits.float(), dim=-1)
    picked = logp.gather(-1, labels.clamp(min=0).unsqueeze(-1)).squeeze(-1) * mask
    return picked, mask, logits


def sequence_logprob(model: nn.Module, batch: dict[str, Tensor]) -> tuple[Tensor, Tensor]:
    """Per example: log P(answer | question) summed over answer tokens, and the answer length."""
    picked, mask, _ = token_logprobs(model, batch)
    return picked.sum(-1), mask.sum(-1)


def lm_loss(model: nn.Module, batch: dict[str, Tensor]) -> Tensor:
    """The training loss: mean negative log-likelihood over all answer tokens in the batch."""
    picked, mask, _ = token_logprobs(model, batch)
    return -picked.sum() / mask.sum()


# --- fine-tuning -----------------------------------------------------------------------------


class LMTrainConfig(BaseModel):
    """Fine-tuning recipe: AdamW with linear warm-up and cosine decay."""

    model_config = ConfigDict(extra="forbid")
    epochs: int = 60
    lr: float = 3e-3
    batch_size: int = 32
    weight_decay: float = 0.0
    warmup: float = 0.05
    seed: int = 0


@dataclass
class FinetuneResult:
    model: nn.Module
    seconds: float
    steps: int


def finetune(
    model: nn.Module,
    tokenizer,
    rows: list[QA],
    config: LMTrainConfig | None = None,
    progress: bool = False,
    device: str | torch.device | None = None,
) -> FinetuneResult:
    """Fine-tune ``model`` in place on ``rows`` (loss on answer tokens only), on ``device``
    (default: where the model lives; the model is moved there)."""
    config = config or LMTrainConfig()
    device = torch.device(device) if device is not None else model_device(model)
    model.to(device)
    generator = seed_everything(config.seed)
    encoded = [encode(tokenizer, qa.question, qa.answer) for qa in rows]
    per_epoch = -(-len(encoded) // config.batch_size)
    total = per_epoch * config.epochs
    optimizer = make_optimizer(model.parameters(), "adamw", config.lr, weight_decay=config.weight_decay)
    warm = max(1, int(config.warmup * total))
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer,
        lambda s: min(1.0, (s + 1) / warm) * 0.5 * (1 + torch.cos(torch.tensor(torch.pi * s / total)).item()),
    )
    start, steps = time.perf_counter(), 0
    model.train()
    with Progress("fine-tune", total=config.epochs, enabled=progress) as bar:
        for _ in range(config.epochs):
            for idx in batches(len(encoded), config.batch_size, generator):
                loss = lm_loss(model, collate([encoded[i] for i in idx], tokenizer.pad_token_id, device))
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                schedule.step()
                steps += 1
            bar.advance(loss=round(loss.item(), 4))
    model.eval()
    return FinetuneResult(model, time.perf_counter() - start, steps)


def original_and_oracle(
    task: LMTask,
    tokenizer,
    config: LMTrainConfig | None = None,
    progress: bool = False,
    device: str | torch.device | None = None,
    **arch,
) -> tuple[FinetuneResult, FinetuneResult]:
    """The fine-tuned original (all facts) and the retain oracle (all but the forget facts),
    from the same initialisation and recipe, on ``device`` (default: the CPU)."""
    config = config or LMTrainConfig()
    original = finetune(tiny_gpt2(tokenizer, seed=config.seed, **arch), tokenizer, task.train, config, progress, device)
    rows = [*task.retain, *task.world]
    oracle = finetune(tiny_gpt2(tokenizer, seed=config.seed, **arch), tokenizer, rows, config, progress, device)
    return original, oracle
