"""``socialbot train emotion``: fine-tune the emotion classifier on GoEmotions.

LoRA on every linear layer of all-MiniLM-L6-v2 plus a new 28-label head, trained
with AdamW (weight decay, linear warm-up and decay), binary cross-entropy over
the labels. Batches are length-bucketed and padded only to their longest text.
After each epoch the dev set is scored (macro-F1 at a 0.3 threshold); the best
epoch's weights are kept, and training stops after ``patience`` epochs without
improvement. A checkpoint every ``checkpoint_every`` steps makes a run
resumable where it stopped. At the end each label's threshold, and each Ekman group's,
is tuned on dev.
"""

from __future__ import annotations

import json
import logging
import math
import shlex
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from core._files import read_lines
from core.emotion.classifier import (
    build_network,
    load_network,
    probabilities,
    reads_emoji_names,
    save_weights,
    write_input,
    write_thresholds,
)
from core.emotion.labels import EKMAN, LABELS
from core.emotion.text import spell_emoji
from core.errors import ConfigError
from core.training import checkpoints, steps
from core.training.batching import length_batches

log = logging.getLogger(__name__)
GROUPS = sorted(set(EKMAN.values()))
MEMBERS = [[i for i, label in enumerate(LABELS) if EKMAN[label] == g] for g in GROUPS]


@dataclass(frozen=True)
class TrainConfig:
    data: Path
    out: Path
    epochs: int = 4
    lr: float = 5e-4
    batch_size: int = 32
    seed: int = 13
    max_length: int = 64
    warmup: float = 0.06
    weight_decay: float = 0.01
    patience: int = 2
    lora_r: int = 16
    lora_alpha: int = 32
    checkpoint_every: int = 200
    limit: int | None = None
    resume: bool = True
    encoder: str = "embedded"
    tune_only: bool = False
    emoji_names: bool = False


def read_split(path: Path, limit: int | None = None) -> tuple[list[str], list[list[int]]]:
    """``text<TAB>label ids<TAB>id`` lines (GoEmotions' own format)."""
    texts, labels = [], []
    lines = read_lines(path)
    for number, line in enumerate(lines[:limit], 1):
        parts = line.split("\t")
        try:
            ids = [int(i) for i in parts[1].split(",")]
        except (IndexError, ValueError):
            raise ConfigError(f"{path}:{number}: expected text<TAB>label ids") from None
        if any(not 0 <= i < len(LABELS) for i in ids):
            raise ConfigError(f"{path}:{number}: label id out of range")
        texts.append(parts[0])
        labels.append(ids)
    return texts, labels


def _truth(gold: list[list[int]], rows: int) -> Any:
    import numpy as np

    truth = np.zeros((rows, len(LABELS)), dtype=bool)
    for row, ids in enumerate(gold):
        truth[row, ids] = True
    return truth


def _grouped(p: Any, truth: Any) -> tuple[Any, Any]:
    """Scores (each group's most likely label) and truth per Ekman group, in GROUPS order."""
    import numpy as np

    score = np.stack([p[:, m].max(axis=1) for m in MEMBERS], axis=1)
    return score, np.stack([truth[:, m].any(axis=1) for m in MEMBERS], axis=1)


def _at_least_one(p: Any, limits: Any) -> Any:
    predicted = p >= limits
    empty = ~predicted.any(axis=1)
    predicted[empty, p[empty].argmax(axis=1)] = True  # every message gets at least one
    return predicted


def scores(
    probs: list[list[float]],
    gold: list[list[int]],
    thresholds: list[float] | float = 0.3,
    group_thresholds: dict[str, float] | None = None,
) -> dict[str, Any]:
    """Macro/micro F1 over the 28 labels and over Ekman 6 + neutral.

    Ekman groups are those of the predicted labels or, with ``group_thresholds``, the
    groups whose most likely label reaches the group's threshold (as a reading does).
    """
    import numpy as np
    from sklearn.metrics import f1_score

    p = np.asarray(probs)
    limits = np.asarray(thresholds if isinstance(thresholds, list) else [thresholds] * p.shape[1])
    predicted = _at_least_one(p, limits)
    truth = _truth(gold, len(p))
    group_score, group_truth = _grouped(p, truth)
    if group_thresholds:
        groups = _at_least_one(group_score, np.asarray([group_thresholds[g] for g in GROUPS]))
    else:
        _, groups = _grouped(p, predicted)
    return {
        "macro_f1": float(f1_score(truth, predicted, average="macro", zero_division=0)),
        "micro_f1": float(f1_score(truth, predicted, average="micro", zero_division=0)),
        "ekman_macro_f1": float(f1_score(group_truth, groups, average="macro", zero_division=0)),
    }


def _best_thresholds(p: Any, truth: Any) -> list[float]:
    """Per column, the threshold in 0.05..0.95 with the best F1 on this data."""
    import numpy as np
    from sklearn.metrics import f1_score

    grid = np.arange(0.05, 0.96, 0.05)
    best = []
    for column in range(p.shape[1]):
        f1s = [f1_score(truth[:, column], p[:, column] >= t, zero_division=0) for t in grid]
        best.append(round(float(grid[int(np.argmax(f1s))]), 2))
    return best


def tune_thresholds(probs: list[list[float]], gold: list[list[int]]) -> list[float]:
    """Per label, the threshold in 0.05..0.95 with the best F1 on this data."""
    import numpy as np

    p = np.asarray(probs)
    return _best_thresholds(p, _truth(gold, len(p)))


def tune_group_thresholds(probs: list[list[float]], gold: list[list[int]]) -> dict[str, float]:
    """Per Ekman group, the threshold on its most likely label's probability with the
    best F1 on this data."""
    import numpy as np

    p = np.asarray(probs)
    score, truth = _grouped(p, _truth(gold, len(p)))
    return dict(zip(GROUPS, _best_thresholds(score, truth), strict=True))


def train(config: TrainConfig) -> dict[str, Any]:
    import torch
    from tqdm import tqdm
    from transformers import get_linear_schedule_with_warmup

    if config.tune_only:
        return retune(config)
    torch.manual_seed(config.seed)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    write_input(config.out, emoji_names=config.emoji_names)
    train_texts, train_gold = read_split(config.data / "train.tsv", config.limit)
    dev_texts, dev_gold = read_split(config.data / "dev.tsv", config.limit)
    if config.emoji_names:
        train_texts = [spell_emoji(text) for text in train_texts]
        dev_texts = [spell_emoji(text) for text in dev_texts]
    net, tokenizer = build_network(
        config.encoder, lora_r=config.lora_r, lora_alpha=config.lora_alpha
    )
    net.to(device)
    encoded = tokenizer(train_texts, truncation=True, max_length=config.max_length)["input_ids"]
    targets = torch.zeros(len(train_gold), len(LABELS))
    for row, ids in enumerate(train_gold):
        targets[row, ids] = 1.0
    steps_per_epoch = math.ceil(len(encoded) / config.batch_size)
    total = steps_per_epoch * config.epochs
    trainable = [p for p in net.parameters() if p.requires_grad]
    decay = [p for n, p in net.named_parameters() if p.requires_grad and "bias" not in n]
    no_decay = [p for n, p in net.named_parameters() if p.requires_grad and "bias" in n]
    optimizer = torch.optim.AdamW(
        [
            {"params": decay, "weight_decay": config.weight_decay},
            {"params": no_decay, "weight_decay": 0.0},
        ],
        lr=config.lr,
    )
    schedule = get_linear_schedule_with_warmup(optimizer, int(total * config.warmup), total)
    state: dict[str, Any] = {
        "epoch": 0,
        "step": 0,
        "best": -1.0,
        "best_epoch": -1,
        "bad_epochs": 0,
        "history": [],
    }
    checkpoint = config.out / "checkpoint.pt"
    if config.resume and checkpoint.is_file():
        weights, state = checkpoints.restore(
            checkpoint, device=device, optimizer=optimizer, schedule=schedule
        )
        net.load_state_dict(weights, strict=False)
        log.warning("resuming from epoch %d, step %d", state["epoch"] + 1, state["step"])

    def save_checkpoint() -> None:
        trained = {
            k: v for k, v in net.state_dict().items() if "lora_" in k or k.startswith("head.")
        }
        checkpoints.save(
            checkpoint, weights=trained, optimizer=optimizer, schedule=schedule, state=state
        )

    loss_fn = torch.nn.BCEWithLogitsLoss()
    started = time.time()
    lengths = [len(ids) for ids in encoded]
    while state["epoch"] < config.epochs and state["bad_epochs"] < config.patience:
        net.train()
        batches = length_batches(lengths, config.batch_size, config.seed + state["epoch"])
        bar = tqdm(
            batches,
            desc=f"epoch {state['epoch'] + 1}/{config.epochs}",
            initial=state["step"],
            total=len(batches),
            file=sys.stderr,
        )
        losses: list[float] = []
        for batch in batches[state["step"] :]:
            padded = tokenizer.pad({"input_ids": [encoded[i] for i in batch]}, return_tensors="pt")
            logits = net(padded["input_ids"].to(device), padded["attention_mask"].to(device))
            loss = loss_fn(logits, targets[batch].to(device))
            losses.append(steps.step(loss, trainable, optimizer, schedule))
            state["step"] += 1
            bar.update(1)
            bar.set_postfix(loss=f"{losses[-1]:.4f}")
            if state["step"] % config.checkpoint_every == 0:
                save_checkpoint()
        bar.close()
        net.eval()
        dev = scores(probabilities(net, tokenizer, dev_texts, device=device), dev_gold)
        state["history"].append(
            {"epoch": state["epoch"] + 1, **dev, "train_loss": sum(losses) / max(len(losses), 1)}
        )
        log.warning("epoch %d: dev %s", state["epoch"] + 1, json.dumps(dev))
        if dev["macro_f1"] > state["best"]:
            state.update(best=dev["macro_f1"], best_epoch=state["epoch"] + 1, bad_epochs=0)
            save_weights(net, config.out / "best")
        else:
            state["bad_epochs"] += 1
        state["epoch"] += 1
        state["step"] = 0
        save_checkpoint()
    return _finish(config, tokenizer, device, state, time.time() - started)


def _finish(
    config: TrainConfig, tokenizer: Any, device: str, state: dict[str, Any], seconds: float
) -> dict[str, Any]:
    """Make the best epoch the artifact, tune its thresholds, score it, write the report."""
    best = config.out / "best"
    for name in ("adapter_model.safetensors", "adapter_config.json", "head.safetensors"):
        (config.out / name).write_bytes((best / name).read_bytes())
    report: dict[str, Any] = {
        "command": _command(),
        "config": {k: str(v) if isinstance(v, Path) else v for k, v in asdict(config).items()},
        "device": device,
        "train_seconds_this_run": round(seconds),
        "best_epoch": state["best_epoch"],
        "dev_history": state["history"],
    }
    return _tune(config, device, report)


def _command() -> str | None:
    return (
        "socialbot " + shlex.join(sys.argv[1:]) if sys.argv[1:3] == ["train", "emotion"] else None
    )


def _tune(config: TrainConfig, device: str, report: dict[str, Any]) -> dict[str, Any]:
    """Tune the thresholds of the weights in ``config.out`` on dev (per label and per
    Ekman group), score dev and test with them, and write them with the report."""
    net, tokenizer = load_network(config.out, config.encoder)
    net.to(device)
    # as these weights read: with emoji spelled out when they were trained so
    prepare = spell_emoji if reads_emoji_names(config.out) else str
    dev_texts, dev_gold = read_split(config.data / "dev.tsv", config.limit)
    dev = probabilities(net, tokenizer, [prepare(t) for t in dev_texts], device=device)
    thresholds = tune_thresholds(dev, dev_gold)
    groups = tune_group_thresholds(dev, dev_gold)
    report["dev_tuned"] = scores(dev, dev_gold, thresholds, groups)
    test_file = config.data / "test.tsv"
    if test_file.is_file():
        test_texts, test_gold = read_split(test_file, config.limit)
        test = probabilities(net, tokenizer, [prepare(t) for t in test_texts], device=device)
        report["test"] = scores(test, test_gold, thresholds, groups)
    write_thresholds(config.out, thresholds, groups)
    (config.out / "training.json").write_text(json.dumps(report, indent=2) + "\n")
    return report


def retune(config: TrainConfig) -> dict[str, Any]:
    """Tune the thresholds of trained weights again (``--tune-only``), keeping their
    training record; the command is recorded beside the one that trained them."""
    import torch

    record = config.out / "training.json"
    report: dict[str, Any] = json.loads(record.read_text()) if record.is_file() else {}
    report["tune_command"] = _command()
    return _tune(config, "cuda" if torch.cuda.is_available() else "cpu", report)
