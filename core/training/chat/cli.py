"""The chat model's fine-tuning commands: ``train chat``, ``eval chat``, ``export training``."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path
from typing import Any

from core.settings import BotProfile, Settings

_TRAIN_OPTIONS: tuple[tuple[str, type, Any, str], ...] = (
    ("--lora-r", int, 16, "LoRA rank"),
    ("--lora-alpha", int, 32, "LoRA alpha (the update is scaled by alpha / rank)"),
    ("--lora-dropout", float, 0.05, "dropout on the LoRA input"),
    ("--lr", float, 5e-4, "peak learning rate (AdamW)"),
    ("--epochs", int, 1, "most epochs"),
    ("--batch-size", int, 8, "sequences per step"),
    ("--max-length", int, 512, "tokens per sequence (longer conversations are cut at turns)"),
    ("--warmup", float, 0.05, "share of the steps spent warming the learning rate up"),
    ("--weight-decay", float, 0.0, "AdamW weight decay"),
    ("--patience", int, 1, "epochs without a better dev perplexity before stopping"),
    ("--seed", int, 13, "random seed (data split, order, initialisation)"),
    ("--dev-fraction", float, 0.05, "share of the conversations held out as dev (without --dev)"),
    ("--checkpoint-every", int, 50, "steps between resumable checkpoints"),
    ("--limit", int, None, "use only the first N conversations (for trials)"),
    ("--max-steps", int, None, "stop after N steps (a time budget)"),
    ("--threads", int, None, "CPU threads (default: all cores)"),
)


def _model_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--model",
        default=None,
        help="base model: 'embedded' (SmolLM2-135M-Instruct), a Hugging Face id or folder, "
        "or a .gguf file (default: the bot profile's)",
    )
    parser.add_argument("--gguf-file", default=None, help="a GGUF file inside --model")
    parser.add_argument(
        "--bot-speaker",
        choices=["1", "2", "both"],
        default="both",
        help="Synthetic-Persona-Chat CSV: which speaker plays the bot",
    )


def add_parsers(train_what: Any, eval_what: Any, commands: Any, common: Any) -> None:
    train = train_what.add_parser(
        "chat",
        help="fine-tune the chat model (LoRA) on conversations",
        description="LoRA fine-tuning of the chat model on conversations (JSONL with "
        "OpenAI-style messages, or Synthetic-Persona-Chat CSV). The loss covers the bot's "
        "turns only. Writes an adapter folder and OUT/training.json; resumes from "
        "OUT/checkpoint.pt. Uses a GPU when one is available. See docs/fine-tuning.md.",
    )
    train.add_argument("--data", required=True, type=Path, metavar="FILE", help=".jsonl or .csv")
    train.add_argument("--dev", type=Path, metavar="FILE", help="dev conversations (optional)")
    train.add_argument("--out", required=True, type=Path, help="adapter folder to write")
    _model_options(train)
    train.add_argument(
        "--target-modules",
        default="all-linear",
        help="comma-separated module names to adapt, or all-linear",
    )
    train.add_argument("--schedule", choices=["cosine", "linear"], default="cosine")
    for name, kind, default, text in _TRAIN_OPTIONS:
        train.add_argument(name, type=kind, default=default, help=text)
    train.add_argument(
        "--no-gradient-checkpointing",
        dest="gradient_checkpointing",
        action="store_false",
        help="faster, but several times the memory",
    )
    train.add_argument("--no-resume", dest="resume", action="store_false")
    common(train)

    evaluate = eval_what.add_parser(
        "chat",
        help="perplexity of the bot's turns, base model vs fine-tuned",
        description="Perplexity of the bot's turns of held-out conversations under the base "
        "model and under base + adapter, side by side, as JSON.",
    )
    evaluate.add_argument("--data", required=True, type=Path, metavar="FILE", help=".jsonl or .csv")
    evaluate.add_argument(
        "--adapter", type=Path, help="adapter folder (default: the bot profile's)"
    )
    _model_options(evaluate)
    evaluate.add_argument("--max-length", type=int, default=512)
    evaluate.add_argument("--limit", type=int, default=None, help="first N conversations only")
    evaluate.add_argument("--batch-size", type=int, default=8)
    common(evaluate)

    export = commands.add_parser(
        "export",
        help="export stored conversations",
        description="Export what the bot stored, for uses its users agreed to.",
    )
    export_what = export.add_subparsers(dest="what", metavar="WHAT", required=True)
    training = export_what.add_parser(
        "training",
        help="conversations of users who ran /consent training, as fine-tuning JSONL",
        description="Write the bot's conversations with the users who agreed to training "
        "(/consent training) as JSONL for `socialbot train chat`: nobody else's words, "
        "personal data redacted, ids replaced by pseudonyms made for this file only.",
    )
    training.add_argument("--out", required=True, type=Path, metavar="FILE.jsonl")
    training.add_argument(
        "--gap-hours",
        type=float,
        default=6.0,
        help="a pause this long starts a new conversation",
    )
    common(training)


def _base(args: argparse.Namespace, profile: BotProfile) -> tuple[str, str | None]:
    if args.model is not None:
        return args.model, args.gguf_file
    return profile.model.model, profile.model.gguf_file


def run(args: argparse.Namespace, settings: Settings, profile: BotProfile) -> int:
    if args.command == "train":
        return _train(args, settings, profile)
    if args.command == "eval":
        return _evaluate(args, settings, profile)
    return asyncio.run(_export(args, settings, profile))


def _train(args: argparse.Namespace, settings: Settings, profile: BotProfile) -> int:
    from core.training.chat.train import ChatTrainConfig, train

    model, gguf_file = _base(args, profile)
    report = train(
        ChatTrainConfig(
            data=args.data,
            dev_data=args.dev,
            out=args.out,
            cache_dir=settings.cache_dir,
            base_model=model,
            gguf_file=gguf_file,
            bot_speaker=args.bot_speaker,
            target_modules=tuple(m.strip() for m in args.target_modules.split(",") if m.strip()),
            schedule=args.schedule,
            gradient_checkpointing=args.gradient_checkpointing,
            resume=args.resume,
            **{
                name[2:].replace("-", "_"): getattr(args, name[2:].replace("-", "_"))
                for name, *_ in _TRAIN_OPTIONS
            },
        )
    )
    print(
        json.dumps(
            {
                k: report[k]
                for k in ("train_seconds", "steps", "best_epoch", "dev_base", "dev_best")
            },
            indent=2,
        )
    )
    print(
        f"The adapter is in {args.out}. To use it, set in a bot profile:\n"
        f'[model]\nmodel = "{model}"\nadapter = "{args.out.resolve()}"',
        file=sys.stderr,
    )
    return 0


def _evaluate(args: argparse.Namespace, settings: Settings, profile: BotProfile) -> int:
    import torch

    from core.errors import ConfigError
    from core.generation.models import trained_base
    from core.training.chat.perplexity import perplexity
    from core.training.chat.train import examples_of, load_base, pad_id

    adapter = args.adapter if args.adapter is not None else profile.adapter_path()
    if adapter is None:
        raise ConfigError("no adapter to compare with: give --adapter or set [model] adapter")
    if not (adapter / "adapter_config.json").is_file():
        raise ConfigError(f"{adapter} is not a LoRA adapter folder (no adapter_config.json)")
    model, gguf_file = _base(args, profile)
    if args.model is None and (trained := trained_base(adapter)) is not None:
        model, gguf_file = trained  # the base the adapter was trained on
    from peft import PeftModel

    device = "cuda" if torch.cuda.is_available() else "cpu"
    base, tokenizer = load_base(model, gguf_file, settings.cache_dir)
    examples = examples_of(args.data, tokenizer, args.max_length, args.bot_speaker, args.limit)
    if not examples:
        raise ConfigError(f"{args.data}: no bot turns to evaluate")
    network = PeftModel.from_pretrained(base, str(adapter)).to(device)
    options = {"pad_id": pad_id(tokenizer), "device": device, "batch_size": args.batch_size}
    with network.disable_adapter():
        before = perplexity(network, examples, progress="base model", **options)
    after = perplexity(network, examples, progress="with adapter", **options)
    change = after["perplexity"] / before["perplexity"] - 1
    print(
        json.dumps(
            {
                "data": str(args.data),
                "sequences": len(examples),
                "bot_tokens": before["tokens"],
                "base_model": model,
                "adapter": str(adapter),
                "base": {"perplexity": round(before["perplexity"], 3), "loss": before["loss"]},
                "adapted": {"perplexity": round(after["perplexity"], 3), "loss": after["loss"]},
                "perplexity_change": f"{change:+.1%}",
            },
            indent=2,
        )
    )
    return 0


async def _export(args: argparse.Namespace, settings: Settings, profile: BotProfile) -> int:
    from core.privacy import Privacy
    from core.storage.store import Store
    from core.training.chat.export import export_training

    store = await Store.open(settings.database_path, Privacy.from_settings(settings))
    try:
        summary = await export_training(
            store, profile.name, profile.persona, args.out, gap_hours=args.gap_hours
        )
    finally:
        await store.close()
    print(
        f"Wrote {summary.conversations} conversations ({summary.messages} messages) of "
        f"{summary.people} people who agreed to training to {args.out}",
        file=sys.stderr,
    )
    return 0
