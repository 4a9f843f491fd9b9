"""Batches for training: shuffled, yet of similar lengths, so little of each is padding."""

from __future__ import annotations

import random


def length_batches(lengths: list[int], batch_size: int, seed: int) -> list[list[int]]:
    """Indices of ``lengths`` in batches: shuffled, then sorted by length within pools of
    50 batches, and the batches shuffled again. Every index appears exactly once."""
    rng = random.Random(seed)
    order = list(range(len(lengths)))
    rng.shuffle(order)
    pool = batch_size * 50
    batches: list[list[int]] = []
    for start in range(0, len(order), pool):
        chunk = sorted(order[start : start + pool], key=lengths.__getitem__)
        batches += [chunk[i : i + batch_size] for i in range(0, len(chunk), batch_size)]
    rng.shuffle(batches)
    return batches
