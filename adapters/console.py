"""The terminal: chat with a bot with no platform and no token.

Interactive mode streams the reply as it is generated and keeps a readline
history; one-shot mode (``--message``) prints only the finished reply.
Without a channel a message is a DM from the user; with one, it is said in
that group channel.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
from pathlib import Path
from typing import TextIO

from core.bot import Bot
from core.channel import CollectingChannel
from core.turn import TurnResult
from core.types import Message, Place, PlaceKind, Reply, Speaker

PLATFORM = "console"
QUIT = {"/quit", "/exit"}


def make_message(text: str, *, user: str, channel: str | None = None, name: str = "") -> Message:
    if channel:
        place = Place(PLATFORM, channel, PlaceKind.GROUP)
    else:
        place = Place(PLATFORM, f"dm:{user}", PlaceKind.DM)
    # In the terminal every line is said to the bot, in a channel too.
    return Message(Speaker(PLATFORM, user, name or user), place, text, mentions_bot=True)


async def ask(bot: Bot, text: str, *, user: str, channel: str | None = None) -> TurnResult:
    """Answer one message; the reply is in the result."""
    return await bot.handle(make_message(text, user=user, channel=channel), CollectingChannel())


class TerminalChannel:
    """Prints the reply as it streams, then finishes the line."""

    def __init__(self, out: TextIO, bot_name: str) -> None:
        self.out = out
        self.bot_name = bot_name
        self.streamed = False

    async def typing(self) -> None:
        self.out.write(f"{self.bot_name}> ")
        self.out.flush()

    async def stream(self, piece: str) -> None:
        if not self.streamed:
            piece = piece.lstrip()
        self.streamed = True
        self.out.write(piece)
        self.out.flush()

    async def react(self, emoji: str) -> None:
        self.out.write(f"  [{emoji}]\n")
        self.out.flush()

    async def whisper(self, text: str) -> None:
        self.out.write(f"{self.bot_name} (only you see this)> {text}\n")
        self.out.flush()

    async def send(self, reply: Reply) -> None:
        if reply.reaction:
            self.out.write(f"  [{reply.reaction}]")
        if self.streamed and not reply.failed:
            self.out.write("\n")
        else:
            if self.streamed:  # a partial reply that then failed
                self.out.write("\n")
            self.out.write(f"{self.bot_name}> {reply.text}\n")
        self.out.flush()


def _readline(history: Path) -> None:
    """Line editing and a history file, where the platform has readline."""
    try:
        import readline
    except ImportError:
        return
    with contextlib.suppress(OSError):
        readline.read_history_file(history)
    readline.set_history_length(1000)

    import atexit

    def save() -> None:
        with contextlib.suppress(OSError):
            history.parent.mkdir(parents=True, exist_ok=True)
            readline.write_history_file(history)

    atexit.register(save)


async def interactive(bot: Bot, *, user: str, channel: str | None = None) -> None:
    out = sys.stdout
    _readline(bot.settings.data_dir / "console_history")
    where = f"#{channel}" if channel else "a direct message"
    out.write(
        f"Chatting with {bot.profile.name} as {user} in {where} ({bot.generator.name} backend). "
        "/help for commands, /quit or Ctrl-D to leave.\n"
    )

    async def unprompted(place: Place, text: str) -> None:  # reminders and the like
        out.write(f"\n{bot.profile.name}> {text}\nyou> ")
        out.flush()

    bot.connect(PLATFORM, unprompted)

    def again(message: Message, shown: object) -> TerminalChannel:
        out.write(f"(before it stopped, you said: {message.text})\n")
        return TerminalChannel(out, bot.profile.name)

    # what was said before the terminal was stopped or killed, answered first
    await bot.resume(PLATFORM, again)
    await bot.idle()
    while True:
        try:
            text = await asyncio.to_thread(input, "you> ")
        except EOFError:
            out.write("\n")
            return
        if text.strip() in QUIT:
            return
        if not text.strip():
            continue
        message = make_message(text, user=user, channel=channel)
        await bot.handle(message, TerminalChannel(out, bot.profile.name))
