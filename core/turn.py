"""One turn: a message on its way through the pipeline, what the stages found, and
the services the stages use.

The stages see the bot only as :class:`Services`, a protocol of exactly what they
use; :class:`core.bot.Bot` satisfies it. That keeps the dependencies one way: the
pipeline, the plugin host, access and status never import the bot that assembles
them (see docs/architecture.md).
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from core.channel import ReplyChannel
from core.types import Message, Reply

if TYPE_CHECKING:
    from core.commands import CommandTable
    from core.emotion.history import EmotionHistory
    from core.emotion.labels import Reading
    from core.emotion.policy import Decision
    from core.emotion.reader import Batcher
    from core.generation.base import Generator
    from core.memory.facts import Profiles
    from core.memory.longterm import LongTermMemory, Vectors
    from core.memory.summary import Folding, Summaries, Summary
    from core.memory.window import Prompt
    from core.people.access import Access
    from core.privacy import Scope
    from core.settings import BotProfile, Settings
    from core.storage.inbox import Inbox
    from core.storage.store import Store


class Services(Protocol):
    """What the stages of a turn use of the bot."""

    settings: Settings
    profile: BotProfile
    """The bot's profile (persona, generation, memory, groups...)."""
    store: Store
    inbox: Inbox
    generator: Generator
    memory: LongTermMemory | None
    emotions: Batcher | None
    emotion_history: EmotionHistory
    summaries: Summaries
    facts: Profiles
    """What people have said about themselves (names, places...)."""
    access: Access
    commands: CommandTable
    folding: Folding
    """Summaries folded after the turn, off the reply path."""
    outcomes: Counter[str]


class EndTurn(Exception):
    """Raised by a stage to finish the turn early; ``reply`` (if any) is sent as is."""

    def __init__(self, reason: str, reply: str | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.reply = reply


@dataclass(slots=True)
class Turn:
    """One message on its way through the pipeline, and what the stages found."""

    services: Services
    message: Message
    channel: ReplyChannel
    entry: int | None = None
    """The message's row in the inbox (None: not written there, e.g. not to be answered)."""
    scope: Scope | None = None
    """What may be recalled here; set by guard, before anything is read."""
    user_key: str = ""
    keep: bool = True
    """False while the speaker has opted out: nothing of theirs is stored."""
    text: str = ""
    emotion: Reading | None = None
    """The emotion read from the message (perceive), for the policy and for plugins."""
    decision: Decision | None = None
    vector: Vectors | None = None
    summary: Summary | None = None
    prompt: Prompt | None = None
    reply: str = ""
    failed: bool = False
    stored: tuple[int, int | None] | None = None
    persona: str | None = None
    """A plugin's persona for this turn, instead of the profile's."""
    notes: list[str] = field(default_factory=list)
    """What plugins give the model for this turn (reference passages, instructions)."""
    timings: dict[str, float] = field(default_factory=dict)
    started: float = field(default_factory=time.perf_counter)
    """When the turn was handed in (queued behind its conversation's earlier turns)."""
    first_piece_s: float | None = None
    """Seconds from :attr:`started` to the model's first streamed piece."""
    outcome: str = ""
    """How it ended (core.status.OUTCOMES): set when it ends."""


@dataclass(frozen=True, slots=True)
class TurnResult:
    reply: Reply | None
    """What was sent, if anything."""
    ended: str | None = None
    """Why the turn stopped before the end, if it did."""
    stored: tuple[int, int | None] | None = None


Stage = Callable[[Turn], Awaitable[None]]
"""One step of a turn; it ends the turn early by raising :class:`EndTurn`."""
