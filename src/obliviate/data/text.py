"""Text data that ships in a package: language identification over the ChatterBot corpus.

``chatterbot-corpus`` (BSD-3-Clause) installs YAML conversations in about twenty languages,
``chatterbot_corpus/data/<language>/<category>.yml``. Every statement and response is one row,
labelled with its language. A line is kept once per language (its first occurrence, in file
order), and a line written identically in two languages is dropped, since no model can tell
those apart. The record key of a row is ``<language>/<category>/<n>``: the n-th distinct line of
that category file, so it names the same sentence in every run and on every machine.

Token ids come from a byte-level BPE tokenizer (Hugging Face ``tokenizers``) trained here on the
training rows of the split only; nothing is downloaded. The tokenizer is preprocessing shared by
the original and the retrained reference: forgetting rows changes the model, not the vocabulary.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from obliviate.data.dataset import DataError, Dataset, DataSplit, split_dataset
from obliviate.extras import need

LANGUAGES = (
    "english",
    "spanish",
    "portuguese",
    "italian",
    "dutch",
    "ukrainian",
    "persian",
    "japanese",
    "korean",
    "chinese",
)
"""The ten languages with over 600 distinct lines each (traditional Chinese is left out: it
shares most of its lines with simplified Chinese)."""

PAD, CLS = "[PAD]", "[CLS]"
PAD_ID = 0
"""Token id of padding; the encoder masks it (``obliviate.models.text``)."""


@dataclass(frozen=True)
class TextRows:
    texts: list[str]
    labels: np.ndarray
    keys: np.ndarray


def corpus_rows(languages: tuple[str, ...] = LANGUAGES, per_class: int | None = None) -> TextRows:
    """Every distinct line of the chosen languages, labelled by language (index in ``languages``).

    With ``per_class``, each language keeps that many lines, chosen by a hash of their keys (a
    fixed, even spread over categories; the same on every machine)."""
    yaml = need("yaml", "text")
    root = Path(need("chatterbot_corpus.corpus", "text").DATA_DIRECTORY)
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    found: dict[str, dict[str, str]] = {}  # language -> text -> key
    for lang in languages:
        folder = root / lang
        if not folder.is_dir():
            raise DataError(f"chatterbot-corpus has no language {lang!r}")
        seen: dict[str, str] = {}
        for path in sorted(folder.glob("*.yml")):
            lines: list[str] = []
            for conversation in yaml.load(path.read_text(encoding="utf-8"), Loader=loader).get("conversations") or []:
                lines += [s.strip() for s in conversation if isinstance(s, str) and s.strip()]
            for n, text in enumerate(dict.fromkeys(lines)):
                seen.setdefault(text, f"{lang}/{path.stem}/{n}")
        found[lang] = seen
    counts: dict[str, int] = {}
    for seen in found.values():
        for text in seen:
            counts[text] = counts.get(text, 0) + 1
    texts, labels, keys = [], [], []
    for label, lang in enumerate(languages):
        rows = sorted((key, text) for text, key in found[lang].items() if counts[text] == 1)
        if per_class is not None:
            rows = sorted(rows, key=lambda row: hashlib.sha256(row[0].encode()).hexdigest())[:per_class]
            rows.sort()
        texts += [text for _, text in rows]
        keys += [key for key, _ in rows]
        labels += [label] * len(rows)
    return TextRows(texts, np.asarray(labels), np.asarray(keys))


def train_bpe(texts: list[str], vocab_size: int):
    """A byte-level BPE tokenizer trained on ``texts`` (deterministic; no unknown tokens, so
    characters never seen in training, common in Chinese and Japanese, still get ids)."""
    tokenizers = need("tokenizers", "text")
    byte_level = tokenizers.pre_tokenizers.ByteLevel
    tok = tokenizers.Tokenizer(tokenizers.models.BPE())
    tok.pre_tokenizer = byte_level(add_prefix_space=True)
    tok.decoder = tokenizers.decoders.ByteLevel()
    trainer = tokenizers.trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=[PAD, CLS], initial_alphabet=byte_level.alphabet(), show_progress=False
    )
    tok.train_from_iterator(texts, trainer)
    return tok


def encode(tokenizer, texts: list[str], max_len: int) -> torch.Tensor:
    """Token ids ``[CLS] tokens... [PAD]...`` cut to ``max_len``, as an int64 tensor (rows, max_len)."""
    cls = tokenizer.token_to_id(CLS)
    ids = torch.full((len(texts), max_len), PAD_ID, dtype=torch.long)
    for row, enc in enumerate(tokenizer.encode_batch(texts)):
        tokens = [cls, *enc.ids][:max_len]
        ids[row, : len(tokens)] = torch.tensor(tokens, dtype=torch.long)
    return ids


def load_text_lang(
    test_fraction: float = 0.2,
    seed: int = 0,
    *,
    languages: tuple[str, ...] = LANGUAGES,
    per_class: int | None = 500,
    vocab_size: int = 2048,
    max_len: int = 32,
) -> DataSplit:
    """Language identification on the ChatterBot corpus: token ids (int64, padded with
    ``PAD_ID``) and the language as the class, split by ``seed`` (stratified), the tokenizer
    trained on the training rows. ``meta["tokenizer"]`` holds the tokenizer as JSON."""
    rows = corpus_rows(tuple(languages), per_class)
    # split first (row positions as stand-in inputs), so the tokenizer sees the training rows only
    positions = Dataset(torch.arange(len(rows.labels)).unsqueeze(1), torch.from_numpy(rows.labels))
    parts = split_dataset(positions, test_fraction, seed)
    train_rows, test_rows = parts.train.storage_rows(), parts.test.storage_rows()
    tokenizer = train_bpe([rows.texts[i] for i in train_rows.tolist()], vocab_size)
    full = Dataset(
        encode(tokenizer, rows.texts, max_len),
        torch.from_numpy(rows.labels),
        class_names=tuple(languages),
        keys=rows.keys,
        name="text-lang",
        meta={"tokenizer": tokenizer.to_str(), "vocab_size": vocab_size, "max_len": max_len},
    )
    return DataSplit(full.subset(train_rows), full.subset(test_rows))
