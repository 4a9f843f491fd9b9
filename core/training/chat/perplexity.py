"""Perplexity of the bot's turns: exp of the mean negative log-likelihood over exactly the
tokens the training loss covers (the assistant's text and its end-of-turn marker)."""

from __future__ import annotations

import math
import sys
from collections.abc import Sequence
from typing import Any

from core.training.chat.data import Example


def collate(examples: Sequence[Example], pad_id: int, device: str) -> dict[str, Any]:
    """Right-padded tensors; padding is masked out of attention and loss."""
    import torch

    width = max(len(e.input_ids) for e in examples)
    ids = torch.full((len(examples), width), pad_id, dtype=torch.long)
    labels = torch.full((len(examples), width), -100, dtype=torch.long)
    mask = torch.zeros((len(examples), width), dtype=torch.long)
    for row, example in enumerate(examples):
        n = len(example.input_ids)
        ids[row, :n] = torch.tensor(example.input_ids)
        labels[row, :n] = torch.tensor(example.labels)
        mask[row, :n] = 1
    return {
        "input_ids": ids.to(device),
        "attention_mask": mask.to(device),
        "labels": labels.to(device),
    }


def token_losses(model: Any, batch: dict[str, Any]) -> tuple[Any, int]:
    """Summed negative log-likelihood of the labelled tokens, and how many there are.

    The output layer is applied to the labelled positions only: with a 49k-word vocabulary
    the full logits of a batch are most of the memory and a large share of the arithmetic,
    and two thirds of the positions (system, user, template) need none.
    """
    import torch

    causal = model.get_base_model() if hasattr(model, "get_base_model") else model
    hidden = causal.get_decoder()(
        input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]
    ).last_hidden_state
    targets = batch["labels"][:, 1:]
    keep = targets != -100
    logits = causal.get_output_embeddings()(hidden[:, :-1][keep]).float()
    total = torch.nn.functional.cross_entropy(logits, targets[keep], reduction="sum")
    return total, int(keep.sum())


def perplexity(
    model: Any,
    examples: Sequence[Example],
    *,
    pad_id: int,
    device: str = "cpu",
    batch_size: int = 8,
    progress: str | None = None,
) -> dict[str, float]:
    """Perplexity and mean loss over ``examples`` (batched by length, no gradients)."""
    import torch
    from tqdm import tqdm

    order = sorted(range(len(examples)), key=lambda i: len(examples[i].input_ids))
    batches = [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
    nll, count = 0.0, 0
    was_training = model.training
    model.eval()
    with torch.inference_mode():
        for batch in tqdm(batches, desc=progress, disable=progress is None, file=sys.stderr):
            total, n = token_losses(model, collate([examples[i] for i in batch], pad_id, device))
            nll += float(total)
            count += n
    if was_training:
        model.train()
    loss = nll / max(count, 1)
    return {"perplexity": math.exp(loss), "loss": loss, "tokens": count}
