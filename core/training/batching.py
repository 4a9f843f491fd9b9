"""Batches of texts of similar lengths, so that little of each batch is padding."""

from __future__ import annotations

import random
from collections.abc import Iterable


def by_length(rows: Iterable[int], lengths: list[int], batch_size: int) -> list[list[int]]:
    """``rows`` (indices of ``lengths``) sorted shortest first, in batches of ``batch_size``."""
    ordered = sorted(rows, key=lengths.__getitem__)
    return [ordered[i : i + batch_size] for i in range(0, len(ordered), batch_size)]


def length_batches(lengths: list[int], batch_size: int, seed: int) -> list[list[int]]:
    """Batches for training: indices of ``lengths`` shuffled, then sorted by length within
    pools of 50 batches, and the batches shuffled again. Every index appears exactly once."""
    rng = random.Random(seed)
    order = list(range(len(lengths)))
    rng.shuffle(order)
    pool = batch_size * 50
    batches: list[list[int]] = []
    for start in range(0, len(order), pool):
        batches += by_length(order[start : start + pool], lengths, batch_size)
    rng.shuffle(batches)
    return batches
