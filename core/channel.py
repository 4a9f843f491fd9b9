"""Where one turn's answer goes: the reply channel an adapter gives the core.

An adapter turns native events into :class:`~core.types.Message` values and
hands each to :meth:`core.bot.Bot.handle` with a :class:`ReplyChannel` that
knows how to answer in the place the message came from.
"""

from __future__ import annotations

from typing import Protocol

from core.types import Reply


class ReplyChannel(Protocol):
    """Where one turn's answer goes."""

    async def typing(self) -> None:
        """Show that the bot is working on a reply (no-op where unsupported)."""

    async def stream(self, piece: str) -> None:
        """A piece of the reply as it is generated (no-op where unsupported)."""

    async def send(self, reply: Reply) -> None:
        """The finished reply; it is already stored when this is called."""

    # Optional, where the platform can (plugins use them through their context):
    #   async def react(self, emoji: str) -> None       react to the user's message
    #   async def whisper(self, text: str) -> None      tell only the speaker


class CollectingChannel:
    """A reply channel that keeps what it is given: for one-shot calls and tests."""

    def __init__(self) -> None:
        self.pieces: list[str] = []
        self.replies: list[Reply] = []
        self.reactions: list[str] = []
        self.whispers: list[str] = []
        self.typing_count = 0

    async def typing(self) -> None:
        self.typing_count += 1

    async def stream(self, piece: str) -> None:
        self.pieces.append(piece)

    async def send(self, reply: Reply) -> None:
        self.replies.append(reply)

    async def react(self, emoji: str) -> None:
        self.reactions.append(emoji)

    async def whisper(self, text: str) -> None:
        self.whispers.append(text)
