"""A small transformer encoder over token ids, for text classification.

Built by name like the other architectures (``build_model("text-transformer", (max_len,), classes)``)
so checkpoints, the CLI and the benchmarks rebuild it from its card. The input is a batch of
token ids; padding (id 0, ``obliviate.data.text.PAD_ID``) is masked out of attention and of the
pooling, so a tensor of ids is enough. An explicit ``attention_mask`` (1 = token, 0 = padding,
as Hugging Face tokenizers give it) is honoured when a dict batch carries one.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from obliviate.data.text import PAD_ID


class TokenEmbedding(nn.Module):
    """Token plus learned position embeddings."""

    def __init__(self, vocab_size: int, max_len: int, dim: int):
        super().__init__()
        self.tokens = nn.Embedding(vocab_size, dim, padding_idx=PAD_ID)
        self.positions = nn.Embedding(max_len, dim)

    def forward(self, ids: Tensor) -> Tensor:
        return self.tokens(ids) + self.positions(torch.arange(ids.shape[1], device=ids.device))


class TextTransformer(nn.Module):
    """Pre-norm transformer encoder, mean-pooled over the tokens that are not padding, then a
    linear head. ``vocab_size`` bounds the token ids (the bundled tokenizer's vocabulary size)."""

    def __init__(
        self,
        input_shape: tuple[int, ...],
        num_outputs: int,
        vocab_size: int = 2048,
        dim: int = 32,
        layers: int = 1,
        heads: int = 4,
        ff: int | None = None,
        dropout: float = 0.1,
    ):
        super().__init__()
        (max_len,) = input_shape
        self.embed = TokenEmbedding(vocab_size, max_len, dim)
        layer = nn.TransformerEncoderLayer(
            dim, heads, ff or 2 * dim, dropout=dropout, batch_first=True, norm_first=True, activation="gelu"
        )
        self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, num_outputs)

    def forward(self, input_ids: Tensor, attention_mask: Tensor | None = None) -> Tensor:
        keep = input_ids != PAD_ID if attention_mask is None else attention_mask.bool()
        keep = keep.clone()
        keep[:, 0] = True  # a row of padding only still attends somewhere (no NaN)
        hidden = self.norm(self.encoder(self.embed(input_ids), src_key_padding_mask=~keep))
        weights = keep.unsqueeze(-1).to(hidden.dtype)
        return self.head((hidden * weights).sum(1) / weights.sum(1))
