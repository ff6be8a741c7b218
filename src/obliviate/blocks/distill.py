"""Teacher-student pieces: frozen teachers and the KL loss on temperature-softened outputs."""

from __future__ import annotations

import copy

import torch.nn.functional as F
from torch import Tensor, nn


def frozen(model: nn.Module) -> nn.Module:
    """A deep copy in eval mode with gradients off: a teacher that never changes."""
    teacher = copy.deepcopy(model).eval()
    for p in teacher.parameters():
        p.requires_grad_(False)
    return teacher


def kl_to_teacher(student_logits: Tensor, teacher_logits: Tensor, temperature: float = 1.0) -> Tensor:
    """Mean over rows of KL(teacher || student) between softmax(logits / T) distributions."""
    return F.kl_div(
        F.log_softmax(student_logits / temperature, dim=1),
        F.log_softmax(teacher_logits / temperature, dim=1),
        reduction="batchmean",
        log_target=True,
    )
