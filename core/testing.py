"""A test kit shipped with the package: drive a real bot in tests, with no model at all.

async with testing.open_bot(tmp_path) as bot:
    reply = await testing.say(bot, "hello", user="alice")
    assert reply == "echo: hello"
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from core.adapter import CollectingChannel
from core.bot import Bot
from core.emotion.reader import EmotionReader, FakeEmotionReader
from core.generation.base import Generator
from core.generation.fake import FakeGenerator, echo
from core.memory import Embedder, FakeEmbedder
from core.pipeline import TurnResult
from core.settings import PROJECT_BOTS_DIR, BotProfile, Settings, load_profile
from core.storage import StoredTurn
from core.types import Message, Place, PlaceKind, Speaker

__all__ = [
    "FakeEmbedder",
    "FakeEmotionReader",
    "FakeGenerator",
    "echo",
    "history",
    "message",
    "open_bot",
    "say",
]

PLATFORM = "test"


def message(
    text: str,
    *,
    user: str = "alice",
    channel: str | None = None,
    platform: str = PLATFORM,
    workspace: str = "",
    thread: str = "",
    name: str = "",
    mentions_bot: bool = True,
) -> Message:
    """A message from ``user``: a DM without ``channel``, else said in that group channel
    (to the bot, unless ``mentions_bot`` is false)."""
    if channel:
        place = Place(platform, channel, PlaceKind.GROUP, workspace, thread)
    else:
        place = Place(platform, f"dm-{user}", PlaceKind.DM, workspace)
    return Message(
        Speaker(platform, user, name or user.capitalize()), place, text, mentions_bot=mentions_bot
    )


@contextlib.asynccontextmanager
async def open_bot(
    data_dir: Path,
    *,
    profile: BotProfile | None = None,
    generator: Generator | None = None,
    embedder: Embedder | None = None,
    emotions: EmotionReader | None = None,
    settings: Settings | None = None,
) -> AsyncIterator[Bot]:
    """A bot on a fresh data folder, with the fake generator, embedder and emotion reader."""
    settings = settings or Settings(
        data_dir=data_dir,
        cache_dir=data_dir / "cache",
        bots_dir=PROJECT_BOTS_DIR,
        _env_file=None,  # type: ignore[call-arg]
    )
    profile = profile or load_profile(PROJECT_BOTS_DIR, "companion")
    bot = await Bot.open(
        settings,
        profile,
        generator=generator or FakeGenerator(),
        embedder=embedder or FakeEmbedder(),
        emotions=emotions or FakeEmotionReader(),
    )
    try:
        yield bot
    finally:
        await bot.close()


async def say(bot: Bot, text: str, **where: Any) -> TurnResult:
    """Send ``text`` (see :func:`message` for ``where``) and return the turn's result."""
    return await bot.handle(message(text, **where), CollectingChannel())


async def history(bot: Bot, sample: Message, *, limit: int = 50) -> list[StoredTurn]:
    """The stored turns of ``sample``'s conversation, as its speaker's scope sees them."""
    scope = bot.store.privacy.scope(sample)
    return await bot.store.recent_turns(bot.profile.name, sample.place, scope, limit=limit)
