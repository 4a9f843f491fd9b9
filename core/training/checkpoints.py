"""Resumable training: the trained weights, optimiser, schedule, progress and random state
in one file, written atomically (a run stopped while saving keeps the previous one)."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def save(
    path: Path, *, weights: dict[str, Any], optimizer: Any, schedule: Any, state: dict[str, Any]
) -> None:
    import torch

    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".tmp")
    torch.save(
        {
            "weights": weights,
            "optimizer": optimizer.state_dict(),
            "schedule": schedule.state_dict(),
            "state": state,
            "rng": torch.get_rng_state(),
        },
        partial,
    )
    partial.replace(path)


def restore(
    path: Path, *, device: str, optimizer: Any, schedule: Any
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Put the optimiser, schedule and random state back; return (weights, progress)."""
    import torch

    saved = torch.load(path, map_location=device, weights_only=False)
    optimizer.load_state_dict(saved["optimizer"])
    schedule.load_state_dict(saved["schedule"])
    torch.set_rng_state(saved["rng"])
    # Emotion checkpoints written before this module existed keep the weights under "net".
    weights = saved["weights"] if "weights" in saved else saved["net"]
    return weights, saved["state"]
