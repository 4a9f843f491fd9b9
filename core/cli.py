"""The ``socialbot`` command."""

from __future__ import annotations

import argparse
import asyncio
import getpass
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from core.errors import ConfigError
from core.logs import setup_logging
from core.settings import BotProfile, Settings, load_profile, load_settings

log = logging.getLogger("socialbot")

EXIT_CONFIG = 2
EXIT_FAILED_TURN = 1


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--bot", metavar="NAME", help="bot profile from the bots folder (default: companion)"
    )
    parser.add_argument(
        "--data-dir",
        metavar="PATH",
        type=Path,
        help="where conversations are stored (default: SOCIALBOT_DATA_DIR or a per-user folder)",
    )
    parser.add_argument(
        "-v", "--verbose", action="count", default=0, help="log more (-v info, -vv debug)"
    )


def _port(text: str) -> int:
    if not text.isdigit() or int(text) > 65535:
        raise argparse.ArgumentTypeError(f"not a port number (0-65535): {text!r}")
    return int(text)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="socialbot",
        description="A self-hosted chat bot with memory, for Discord, Telegram, Slack, "
        "the terminal and the browser.",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    chat = commands.add_parser(
        "chat",
        help="chat with the bot in this terminal (no token needed)",
        description="Chat in the terminal. With --message, answer one message, print only "
        "the reply and exit; conversations persist in the data folder between runs.",
    )
    chat.add_argument("--message", "-m", metavar="TEXT", help="answer this one message and exit")
    chat.add_argument(
        "--user", metavar="ID", default=None, help="who is speaking (default: your login name)"
    )
    chat.add_argument(
        "--channel",
        metavar="ID",
        help="speak in this group channel instead of a direct message",
    )
    _common(chat)

    run = commands.add_parser(
        "run",
        help="run the bot on Discord, Telegram and Slack",
        description="Start every platform whose token is set (DISCORD_BOT_TOKEN, "
        "TELEGRAM_BOT_TOKEN, SLACK_BOT_TOKEN; see .env.example) in one process. Ctrl-C or "
        "SIGTERM stops taking messages, finishes the replies in flight and exits.",
    )
    _common(run)

    web_cmd = commands.add_parser(
        "web",
        help="chat with the bot in a browser (no token needed)",
        description="Serve a chat page on this machine (SOCIALBOT_WEB_HOST, "
        "SOCIALBOT_WEB_PORT: 127.0.0.1:8080) and answer there; each browser is a person of "
        "its own. Ctrl-C stops it.",
    )
    web_cmd.add_argument("--host", help="listen here instead (0.0.0.0: every interface)")
    web_cmd.add_argument("--port", type=_port, help="listen on this port instead (0: any free)")
    _common(web_cmd)

    evaluate = commands.add_parser(
        "eval",
        help="measure a part of the bot on a data set",
        description="Measure a part of the bot on a data set and print the results as JSON.",
    )
    what = evaluate.add_subparsers(dest="what", metavar="WHAT", required=True)
    memory = what.add_parser(
        "memory",
        help="recall@k of long-term memory retrieval",
        description="Store each conversation of a JSONL file as the memory of one scope, "
        "retrieve for each question, and print recall@1/5/10/25 overall and per category "
        "(the share of a question's evidence turns found in the top k). The format is "
        "described in docs/memory.md.",
    )
    memory.add_argument("--data", required=True, type=Path, metavar="FILE.jsonl")
    memory.add_argument("--k", type=int, default=10, help="turns per question in --predictions")
    memory.add_argument(
        "--predictions",
        type=Path,
        metavar="OUT.jsonl",
        help="write each question's retrieved turn ids here",
    )
    _common(memory)

    emotion_eval = what.add_parser(
        "emotion",
        help="accuracy and F1 of the emotion classifier",
        description="Read lines `text<TAB>label[,label...]` (label names) and print accuracy "
        "(exact match of the label set), macro- and micro-F1 and per-label F1 as JSON.",
    )
    emotion_eval.add_argument("--data", required=True, type=Path, metavar="FILE.tsv")
    emotion_eval.add_argument(
        "--labels",
        choices=["goemotions", "ekman"],
        default="goemotions",
        help="score the 28 labels, or Ekman's 6 + neutral",
    )
    emotion_eval.add_argument("--weights", type=Path, help="classifier weights folder")

    emotion = commands.add_parser(
        "emotion",
        help="read the emotion of a text",
        description="Print the emotion reading of TEXT as JSON: label probabilities, the "
        "labels over their thresholds, the Ekman group, valence and arousal.",
    )
    emotion.add_argument("text", metavar="TEXT")
    emotion.add_argument("--weights", type=Path, help="classifier weights folder")

    train = commands.add_parser("train", help="fine-tune a model")
    train_what = train.add_subparsers(dest="what", metavar="WHAT", required=True)
    train_emotion = train_what.add_parser(
        "emotion",
        help="fine-tune the emotion classifier on GoEmotions",
        description="LoRA fine-tuning of all-MiniLM-L6-v2 with a 28-label head. Resumes from "
        "OUT/checkpoint.pt if present. Uses a GPU when one is available.",
    )
    default_data = Path(__file__).resolve().parent.parent / "data" / "goemotions"
    train_emotion.add_argument(
        "--data",
        type=Path,
        default=default_data,
        help="folder with train.tsv, dev.tsv (and test.tsv)",
    )
    train_emotion.add_argument("--out", type=Path, required=True, help="output folder")
    for name, kind, default, text in (
        ("--epochs", int, 4, "most epochs"),
        ("--lr", float, 5e-4, "peak learning rate"),
        ("--batch-size", int, 32, "texts per step"),
        ("--seed", int, 13, "random seed"),
        ("--max-length", int, 64, "tokens per text"),
        ("--patience", int, 2, "epochs without dev improvement before stopping"),
        ("--lora-r", int, 16, "LoRA rank"),
        ("--checkpoint-every", int, 200, "steps between checkpoints"),
        ("--limit", int, None, "use only the first N rows of each split (for trials)"),
    ):
        train_emotion.add_argument(name, type=kind, default=default, help=text)
    train_emotion.add_argument("--no-resume", dest="resume", action="store_false")
    train_emotion.add_argument(
        "--tune-only",
        action="store_true",
        help="only tune the thresholds of the weights in OUT on dev, and score them",
    )
    train_emotion.add_argument(
        "--emoji-names",
        action="store_true",
        help="spell emoji out by name (the encoder has none in its vocabulary), in training "
        "and whenever these weights read; the shipped weights' emoji/ network was trained so",
    )

    from core.training.chat.cli import add_parsers

    add_parsers(train_what, what, commands, _common)

    commands.add_parser(
        "keygen",
        help="print a new key for SOCIALBOT_ENCRYPTION_KEY",
        description="Print a new random Fernet key. Put it in .env as SOCIALBOT_ENCRYPTION_KEY "
        "to encrypt stored text; keep a copy somewhere safe.",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "keygen":
        from core.privacy import Cipher

        print(Cipher.new_key())
        return 0
    if args.command == "emotion" or (args.command in ("train", "eval") and args.what == "emotion"):
        return _emotion_commands(args)
    try:
        settings = load_settings(data_dir=args.data_dir, bot=args.bot)
        if args.verbose:
            settings = settings.model_copy(
                update={"log_level": "DEBUG" if args.verbose > 1 else "INFO"}
            )
        setup_logging(settings.log_level, settings.secrets())
        profile = load_profile(settings.bots_dir, settings.bot)
        if args.command == "chat":
            return asyncio.run(_chat(settings, profile, args))
        if args.command == "run":
            from adapters.runner import serve

            asyncio.run(serve(settings, profile))
            return 0
        if args.command == "web":
            from adapters.runner import serve
            from adapters.web import WebAdapter

            given = {"web_host": args.host, "web_port": args.port}
            settings = settings.model_copy(update={k: v for k, v in given.items() if v is not None})
            asyncio.run(serve(settings, profile, adapters=[WebAdapter(settings)]))
            return 0
        if args.command == "eval" and args.what == "memory":
            return asyncio.run(_eval(settings, profile, args))
        if args.command in ("train", "eval", "export"):
            from core.training.chat import cli as chat_cli

            return chat_cli.run(args, settings, profile)
    except ConfigError as error:
        print(f"socialbot: {error}", file=sys.stderr)
        return EXIT_CONFIG
    except KeyboardInterrupt:
        return 130
    raise AssertionError(args.command)


async def _chat(settings: Settings, profile: BotProfile, args: argparse.Namespace) -> int:
    from adapters import console
    from core.bot import Bot

    user = args.user or _login_name()
    async with await Bot.open(settings, profile) as bot:
        if args.message is None:
            await console.interactive(bot, user=user, channel=args.channel)
            return 0
        result = await console.ask(bot, args.message, user=user, channel=args.channel)
    if result.reply is not None:
        print(result.reply.text)
    return EXIT_FAILED_TURN if result.reply is None or result.reply.failed else 0


async def _eval(settings: Settings, profile: BotProfile, args: argparse.Namespace) -> int:
    import json

    from core.memory.evaluation import evaluate_memory
    from core.memory.longterm import SentenceEmbedder

    if args.k < 1:
        raise ConfigError("--k must be at least 1")
    embedder = SentenceEmbedder(settings.embedding_model)
    await embedder.start()
    try:
        result = await evaluate_memory(
            args.data, embedder, k=args.k, settings=profile.memory, predictions=args.predictions
        )
    finally:
        await embedder.close()
    print(json.dumps(result, indent=2))
    return 0


def _emotion_commands(args: argparse.Namespace) -> int:
    """Commands that need neither settings nor a bot profile."""
    import json

    setup_logging("WARNING")
    try:
        if args.command == "train":
            from core.emotion.training import TrainConfig, train

            options = {
                k: getattr(args, k)
                for k in (
                    "data",
                    "out",
                    "epochs",
                    "lr",
                    "batch_size",
                    "seed",
                    "max_length",
                    "patience",
                    "lora_r",
                    "checkpoint_every",
                    "limit",
                    "resume",
                    "tune_only",
                    "emoji_names",
                )
            }
            report = train(TrainConfig(**options))
            print(
                json.dumps(
                    {k: report[k] for k in ("best_epoch", "dev_tuned", "test") if k in report},
                    indent=2,
                )
            )
            return 0
        from core.emotion.classifier import WEIGHTS, EmotionClassifier

        classifier = EmotionClassifier(args.weights or WEIGHTS)
        if args.command == "emotion":
            print(json.dumps(classifier.read_now([args.text])[0].as_dict()))
            return 0
        from core.emotion.scoring import evaluate_file

        print(json.dumps(evaluate_file(classifier, args.data, args.labels), indent=2))
        return 0
    except ConfigError as error:
        print(f"socialbot: {error}", file=sys.stderr)
        return EXIT_CONFIG


def _login_name() -> str:
    try:
        return getpass.getuser()
    except (OSError, KeyError):
        return os.environ.get("USER", "local")
