"""What each network pass is conditioned on (DESIGN.md, "Model families").

The engine never looks inside a condition batch: for label models it is a (B,) tensor of class
indices (the null label = num_classes), for prompt models a tensor of prompt embeddings (B, L, D) or a
dict of such tensors. It only needs to know which batch is conditional, which unconditional, and to
concatenate batches along dim 0 for the one batched CFG forward.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Union

import torch
from torch import Tensor

CondBatch = Union[Tensor, Mapping[str, Tensor], None]


@dataclass(frozen=True)
class Conditions:
    """The condition batches of one run, built by `ModelBundle.conditions(request)`.

    base: what unguided sampling feeds the network (the null label, the target, or None).
    cond: the conditional pass of CFG (the target labels or the prompt), or None.
    null: the unconditional pass of CFG (the null label or the negative/empty prompt), or None.
    target: the classifier's target labels (B,) long, or None.
    """

    base: CondBatch
    cond: CondBatch
    null: CondBatch
    target: Tensor | None


def concat(*batches: CondBatch) -> CondBatch:
    """Concatenate condition batches along the batch dimension (tensors, or dicts key by key)."""
    if any(b is None for b in batches):
        if all(b is None for b in batches):
            return None
        raise ValueError("Cannot concatenate a conditioned and an unconditioned batch.")
    first = batches[0]
    if isinstance(first, Tensor):
        return torch.cat(list(batches))  # type: ignore[arg-type]
    return {key: torch.cat([b[key] for b in batches]) for key in first}  # type: ignore[index]


def take(batch: CondBatch, start: int, stop: int) -> CondBatch:
    """Samples start … stop−1 of a condition batch (tensors, or dicts key by key)."""
    if batch is None or isinstance(batch, Tensor):
        return None if batch is None else batch[start:stop]
    return {key: value[start:stop] for key, value in batch.items()}
