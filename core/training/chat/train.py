"""``socialbot train chat``: LoRA fine-tuning of the chat model on conversations.

The base is the embedded SmolLM2-135M-Instruct (de-quantised once from its GGUF file)
or any Hugging Face causal LM. Only the LoRA matrices train (peft). The loss is the
next-token cross-entropy over the bot's turns alone, rendered with the model's own
chat template (system and user tokens are context, never targets). AdamW with a
warm-up then a cosine or linear decay; gradients clipped at 1.0. The dev split's
perplexity is measured before training (the base model) and after each epoch; the
best epoch's adapter is kept and training stops after ``patience`` epochs without
improvement. A checkpoint every ``checkpoint_every`` steps lets a stopped run resume.

The result is an adapter folder (``adapter_config.json``, ``adapter_model.safetensors``,
the tokenizer) and ``training.json``, the report.
"""

from __future__ import annotations

import json
import logging
import math
import shlex
import shutil
import sys
import time
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

from core.errors import ConfigError
from core.generation import models
from core.training import checkpoints, steps
from core.training.batching import length_batches
from core.training.chat.data import Example, encode_all, read_conversations, split
from core.training.chat.perplexity import collate, perplexity, token_losses

log = logging.getLogger(__name__)

ALL_LINEAR = "all-linear"


@dataclass(frozen=True)
class ChatTrainConfig:
    data: Path
    out: Path
    cache_dir: Path
    base_model: str = models.EMBEDDED
    gguf_file: str | None = None
    dev_data: Path | None = None
    dev_fraction: float = 0.05
    bot_speaker: Literal["1", "2", "both"] = "both"
    lora_r: int = 16
    lora_alpha: int = 32
    lora_dropout: float = 0.05
    target_modules: tuple[str, ...] = (ALL_LINEAR,)
    lr: float = 5e-4
    epochs: int = 1
    batch_size: int = 8
    max_length: int = 512
    warmup: float = 0.05
    schedule: Literal["cosine", "linear"] = "cosine"
    weight_decay: float = 0.0
    patience: int = 1
    seed: int = 13
    checkpoint_every: int = 50
    limit: int | None = None
    max_steps: int | None = None
    gradient_checkpointing: bool = True
    resume: bool = True
    threads: int | None = None

    def check(self) -> None:
        if self.lora_r < 1 or self.lora_alpha < 1:
            raise ConfigError("--lora-r and --lora-alpha must be at least 1")
        if not 0 <= self.dev_fraction < 1:
            raise ConfigError("--dev-fraction must be at least 0 and below 1")
        if self.epochs < 1 or self.batch_size < 1:
            raise ConfigError("--epochs and --batch-size must be at least 1")
        if self.max_length < 32:
            raise ConfigError("--max-length must be at least 32 tokens")
        if self.lr <= 0:
            raise ConfigError("--lr must be above 0")


def load_base(model: str, gguf_file: str | None, cache_dir: Path) -> tuple[Any, Any]:
    """The base causal LM (float32) and its tokenizer."""
    import torch
    import transformers
    from transformers import AutoModelForCausalLM, AutoTokenizer

    transformers.logging.set_verbosity_error()
    warnings.filterwarnings("ignore", ".*is_gradient_checkpointing.*", FutureWarning)  # peft's
    where = models.resolve(model, gguf_file, cache_dir)
    try:
        tokenizer = AutoTokenizer.from_pretrained(where)
        network = AutoModelForCausalLM.from_pretrained(where, dtype=torch.float32)
    except OSError as error:
        raise ConfigError(f"cannot load model {model!r}: {error}".splitlines()[0]) from None
    if not tokenizer.chat_template:
        raise ConfigError(f"model {model!r} has no chat template to train with")
    return network, tokenizer


def pad_id(tokenizer: Any) -> int:
    return int(tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0)


def examples_of(
    path: Path, tokenizer: Any, max_length: int, bot_speaker: str = "both", limit: int | None = None
) -> list[Example]:
    conversations = read_conversations(path, bot_speaker=bot_speaker)  # type: ignore[arg-type]
    return encode_all(tokenizer, conversations[:limit], max_length)


def train(config: ChatTrainConfig) -> dict[str, Any]:
    import torch
    from peft import (
        LoraConfig,
        get_peft_model,
        get_peft_model_state_dict,
        set_peft_model_state_dict,
    )
    from tqdm import tqdm
    from transformers import get_cosine_schedule_with_warmup, get_linear_schedule_with_warmup

    config.check()
    if config.threads:
        torch.set_num_threads(config.threads)
    torch.manual_seed(config.seed)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    base, tokenizer = load_base(config.base_model, config.gguf_file, config.cache_dir)
    conversations = read_conversations(config.data, bot_speaker=config.bot_speaker)
    conversations = conversations[: config.limit]
    if config.dev_data is not None:
        train_set = conversations
        dev_set = read_conversations(config.dev_data, bot_speaker=config.bot_speaker)
        dev_set = dev_set[: config.limit]
    else:
        train_set, dev_set = split(conversations, config.dev_fraction, config.seed)
    train_examples = encode_all(tokenizer, train_set, config.max_length)
    dev_examples = encode_all(tokenizer, dev_set, config.max_length)
    if not train_examples:
        raise ConfigError(f"{config.data}: no bot turns to train on")
    log.warning(
        "%d training sequences (%d bot tokens), %d dev sequences",
        len(train_examples),
        sum(e.trained_tokens for e in train_examples),
        len(dev_examples),
    )
    targets: str | list[str] = (
        ALL_LINEAR if list(config.target_modules) == [ALL_LINEAR] else list(config.target_modules)
    )
    try:
        model = get_peft_model(
            base,
            LoraConfig(
                r=config.lora_r,
                lora_alpha=config.lora_alpha,
                lora_dropout=config.lora_dropout,
                target_modules=targets,
                task_type="CAUSAL_LM",
            ),
        )
    except ValueError as error:
        raise ConfigError(f"--target-modules: {error}".splitlines()[0]) from None
    if config.gradient_checkpointing:
        # Keep each layer's input only and recompute the rest in the backward pass:
        # about a third more arithmetic for a fraction of the memory (15 GB -> ~2 GB at
        # batch 8 x 512 tokens on SmolLM2-135M).
        options = {"use_reentrant": False}
        if hasattr(base, "activation_checkpointing_enable"):  # the newer name
            base.activation_checkpointing_enable(activation_checkpointing_kwargs=options)
        else:
            base.gradient_checkpointing_enable(gradient_checkpointing_kwargs=options)
    model.to(device)
    pad = pad_id(tokenizer)
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=config.lr, weight_decay=config.weight_decay)
    steps_per_epoch = math.ceil(len(train_examples) / config.batch_size)
    total = steps_per_epoch * config.epochs
    if config.max_steps:
        total = min(total, config.max_steps)
    make_schedule = (
        get_cosine_schedule_with_warmup
        if config.schedule == "cosine"
        else get_linear_schedule_with_warmup
    )
    schedule = make_schedule(optimizer, int(total * config.warmup), total)
    state: dict[str, Any] = {
        "epoch": 0,
        "step": 0,
        "global_step": 0,
        "best": math.inf,
        "best_epoch": 0,
        "bad_epochs": 0,
        "history": [],
        "seconds": 0.0,
    }
    checkpoint = config.out / "checkpoint.pt"
    if config.resume and checkpoint.is_file():
        weights, state = checkpoints.restore(
            checkpoint, device=device, optimizer=optimizer, schedule=schedule
        )
        set_peft_model_state_dict(model, weights)
        log.warning("resuming from epoch %d, step %d", state["epoch"] + 1, state["step"])
    else:
        with model.disable_adapter():
            state["base_dev"] = perplexity(
                model, dev_examples, pad_id=pad, device=device, progress="dev, base model"
            )
        log.warning("dev perplexity of the base model: %.3f", state["base_dev"]["perplexity"])

    def save_checkpoint() -> None:
        checkpoints.save(
            checkpoint,
            weights=get_peft_model_state_dict(model),
            optimizer=optimizer,
            schedule=schedule,
            state=state,
        )

    started = time.monotonic()
    lengths = [len(e.input_ids) for e in train_examples]
    out_of_steps = False
    while (
        state["epoch"] < config.epochs
        and state["bad_epochs"] < config.patience
        and not out_of_steps
    ):
        model.train()
        batches = length_batches(lengths, config.batch_size, config.seed + state["epoch"])
        bar = tqdm(
            total=len(batches),
            initial=state["step"],
            desc=f"epoch {state['epoch'] + 1}/{config.epochs}",
            file=sys.stderr,
        )
        losses: list[float] = []
        for batch in batches[state["step"] :]:
            if config.max_steps and state["global_step"] >= config.max_steps:
                out_of_steps = True
                break
            total_loss, count = token_losses(
                model, collate([train_examples[i] for i in batch], pad, device)
            )
            losses.append(steps.step(total_loss / max(count, 1), trainable, optimizer, schedule))
            state["step"] += 1
            state["global_step"] += 1
            bar.update(1)
            bar.set_postfix(loss=f"{losses[-1]:.3f}", lr=f"{schedule.get_last_lr()[0]:.1e}")
            if state["global_step"] % config.checkpoint_every == 0:
                state["seconds"] += time.monotonic() - started
                started = time.monotonic()
                save_checkpoint()
        bar.close()
        dev = perplexity(
            model,
            dev_examples,
            pad_id=pad,
            device=device,
            progress=f"dev, epoch {state['epoch'] + 1}",
        )
        state["history"].append(
            {
                "epoch": state["epoch"] + 1,
                "steps": state["step"],
                "train_loss_first": losses[0] if losses else None,
                "train_loss_last": sum(losses[-10:]) / max(len(losses[-10:]), 1),
                "dev": dev,
            }
        )
        log.warning("epoch %d: dev perplexity %.3f", state["epoch"] + 1, dev["perplexity"])
        if dev["perplexity"] < state["best"]:
            state.update(best=dev["perplexity"], best_epoch=state["epoch"] + 1, bad_epochs=0)
            model.save_pretrained(str(config.out / "best"))
        else:
            state["bad_epochs"] += 1
        state["epoch"] += 1
        state["step"] = 0
        state["seconds"] += time.monotonic() - started
        started = time.monotonic()
        save_checkpoint()
    return _finish(config, tokenizer, state, device)


def _finish(
    config: ChatTrainConfig, tokenizer: Any, state: dict[str, Any], device: str
) -> dict[str, Any]:
    best = config.out / "best"
    for name in ("adapter_config.json", "adapter_model.safetensors"):
        shutil.copyfile(best / name, config.out / name)
    tokenizer.save_pretrained(str(config.out))
    options = {
        k: str(v) if isinstance(v, Path) else list(v) if isinstance(v, tuple) else v
        for k, v in asdict(config).items()
        if k != "cache_dir"
    }
    report: dict[str, Any] = {
        "command": (
            "socialbot " + shlex.join(sys.argv[1:]) if sys.argv[1:3] == ["train", "chat"] else None
        ),
        "base_model": config.base_model,
        "gguf_file": config.gguf_file,
        "config": options,
        "device": device,
        "train_seconds": round(state["seconds"], 1),
        "steps": state["global_step"],
        "best_epoch": state["best_epoch"],
        "dev_base": state.get("base_dev"),
        "dev_best": next(
            (h["dev"] for h in state["history"] if h["epoch"] == state["best_epoch"]), None
        ),
        "history": state["history"],
    }
    (config.out / models.REPORT).write_text(json.dumps(report, indent=2) + "\n")
    return report
