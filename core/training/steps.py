"""One optimiser step, the same for every model this project fine-tunes."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any


def step(loss: Any, trainable: Iterable[Any], optimizer: Any, schedule: Any) -> float:
    """Back-propagate ``loss``, clip the gradients of ``trainable`` to norm 1, step the
    optimiser and the learning-rate schedule, clear the gradients; the loss's value."""
    import torch

    loss.backward()
    torch.nn.utils.clip_grad_norm_(trainable, 1.0)
    optimizer.step()
    schedule.step()
    optimizer.zero_grad()
    return float(loss.item())
