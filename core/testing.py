"""A test kit shipped with the package: drive a real bot in tests, with no model at all.

async with testing.open_bot(tmp_path) as bot:
    reply = await testing.say(bot, "hello", user="alice")
    assert reply == "echo: hello"
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path
from typing import Any

from core.bot import Bot
from core.channel import CollectingChannel
from core.emotion.reader import EmotionReader, FakeEmotionReader
from core.generation.base import Generator
from core.generation.fake import FakeGenerator, echo
from core.memory.longterm import Embedder, FakeEmbedder
from core.settings import PROJECT_BOTS_DIR, BotProfile, Settings, load_profile
from core.storage.store import StoredTurn
from core.turn import TurnResult
from core.types import Message, Place, PlaceKind, Speaker

__all__ = [
    "FakeAdapter",
    "FakeEmbedder",
    "FakeEmotionReader",
    "FakeGenerator",
    "answer",
    "echo",
    "history",
    "message",
    "open_bot",
    "say",
    "settings_for",
    "until",
]

PLATFORM = "test"
ESSENTIAL_PLUGINS = ("help", "privacy")


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


def settings_for(data_dir: Path, **values: Any) -> Settings:
    """Settings for a test: data (and the model cache) under ``data_dir``, the project's
    bot profiles, no ``.env`` file; ``values`` override any setting."""
    return Settings(
        data_dir=data_dir,
        cache_dir=data_dir / "cache",
        bots_dir=PROJECT_BOTS_DIR,
        _env_file=None,  # type: ignore[call-arg]
        **values,
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
    plugins: Sequence[str] | None = None,
    plugin_settings: dict[str, dict[str, Any]] | None = None,
    admins: Sequence[str] = (),
) -> AsyncIterator[Bot]:
    """A bot on a fresh data folder, with the fake generator, embedder and emotion reader.

    ``plugins`` replaces the profile's plugin list: by default only the essential
    ``help`` and ``privacy`` run, so that a test sees exactly the plugins it names;
    ``plugin_settings`` its ``[plugin.NAME]`` tables; ``admins`` are user ids of the
    test platform who may run admin commands.
    """
    settings = settings or settings_for(data_dir)
    if admins:
        listed = ",".join(f"{PLATFORM}:{user}" for user in admins)
        settings = settings.model_copy(update={"admins": listed})
    profile = profile or load_profile(PROJECT_BOTS_DIR, "companion")
    update: dict[str, Any] = {"plugins": ESSENTIAL_PLUGINS if plugins is None else tuple(plugins)}
    if plugin_settings is not None:
        update["plugin"] = plugin_settings
    profile = profile.model_copy(update=update)
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


async def until(holds: Callable[[], bool], within: float = 10.0, every: float = 0.01) -> None:
    """Wait until ``holds()`` is true, checking every ``every`` seconds; TimeoutError after
    ``within`` (for what no condition announces, such as a plugin job's own counters)."""
    async with asyncio.timeout(within):
        while not holds():  # noqa: ASYNC110 - for what announces nothing
            await asyncio.sleep(every)


async def say(bot: Bot, text: str, **where: Any) -> TurnResult:
    """Send ``text`` (see :func:`message` for ``where``) and return the turn's result."""
    return await bot.handle(message(text, **where), CollectingChannel())


async def answer(bot: Bot, text: str, **where: Any) -> str:
    """Send ``text`` and return the reply's text (``""`` when the bot did not answer)."""
    result = await say(bot, text, **where)
    return result.reply.text if result.reply is not None else ""


async def history(bot: Bot, sample: Message, *, limit: int = 50) -> list[StoredTurn]:
    """The stored turns of ``sample``'s conversation, as its speaker's scope sees them."""
    return await bot.history(sample, limit=limit)


class FakeAdapter:
    """A platform for tests: feeds messages to a bot and collects all it says.

    ``await chat.say("hi")`` returns the reply's text (``""`` when there was none);
    ``chat.last`` is the channel of the last turn (its whispers and reactions);
    ``chat.sent`` holds what the bot said unprompted (reminders...), with where.
    """

    def __init__(self, bot: Bot, platform: str = PLATFORM) -> None:
        self.bot = bot
        self.platform = platform
        self.sent: list[tuple[Place, str]] = []
        self.last = CollectingChannel()
        self._arrived = asyncio.Condition()
        bot.connect(platform, self._outbox)

    async def _outbox(self, place: Place, text: str) -> None:
        self.sent.append((place, text))
        async with self._arrived:
            self._arrived.notify_all()

    async def wait_sent(self, count: int = 1, within: float = 10.0) -> list[tuple[Place, str]]:
        """Wait until the bot has said ``count`` things unprompted (e.g. reminders)."""

        async def enough() -> None:
            async with self._arrived:
                await self._arrived.wait_for(lambda: len(self.sent) >= count)

        await asyncio.wait_for(enough(), within)
        return self.sent

    async def turn(self, text: str, **where: Any) -> TurnResult:
        self.last = CollectingChannel()
        return await self.bot.handle(message(text, platform=self.platform, **where), self.last)

    async def say(self, text: str, **where: Any) -> str:
        """``where``: ``user``, ``channel`` (a group; a DM without), ``thread``, ``name``..."""
        result = await self.turn(text, **where)
        return result.reply.text if result.reply is not None else ""
