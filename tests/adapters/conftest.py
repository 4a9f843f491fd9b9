"""Fixtures the platform tests share; a test overrides one with
``@pytest.mark.parametrize("script", [...])``.

The Discord, Telegram and Slack tests run the same harness: a fake platform server
on 127.0.0.1 (the ``server`` fixture), a bot with the fake generator and the real
adapter connected to that server (the ``running`` fixture). Each test module says
which platform with a ``platform`` fixture returning a :class:`Platform`;
``@pytest.mark.parametrize("running", [...], indirect=True)`` hands a value to the
module's settings function (extra settings, or Slack's mode).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generic, TypeVar

import pytest

from adapters.base import PlatformAdapter
from core import testing
from core.bot import Bot
from core.generation.fake import FakeGenerator, Script, echo
from core.settings import Settings
from tests.adapters.helpers import LoopbackServer

AdapterT = TypeVar("AdapterT", bound=PlatformAdapter)
ServerT = TypeVar("ServerT", bound=LoopbackServer)

SETTLE_S = 30.0
"""How long the bot may take to finish the turns of what a test pushed (a 429 is
waited out, a reminder is a second away)."""


@dataclass(frozen=True)
class Platform(Generic[AdapterT, ServerT]):
    """How one platform's adapter runs against its fake server."""

    server: Callable[[], ServerT]
    """Makes the fake server (its class)."""
    settings: Callable[[Path, ServerT, Any], Settings]
    """Settings pointing at the fake: (data folder, server, the ``running`` param or None)."""
    adapter: Callable[[Settings], AdapterT]
    """Makes the adapter (its class)."""
    connected: Callable[[ServerT, AdapterT], Awaitable[None]] | None = None
    """Waits, after ``start``, until the adapter is connected, where that is not done
    when ``start`` returns."""


@dataclass
class Running(Generic[AdapterT, ServerT]):
    """A bot answering on one platform through its real adapter and a fake server."""

    server: ServerT
    adapter: AdapterT
    generator: FakeGenerator
    bot: Bot
    pushed: int = field(default=0)
    """Events the test has handed the platform so far (as told to :meth:`settle`)."""

    async def settle(self, pushed: int) -> None:
        """The test handed the platform ``pushed`` more events (duplicates and ones to be
        ignored included): wait until the adapter has received them all, then until the
        bot has finished every turn they started and the work those turns began.

        Once this returns, nothing those events cause is still to come, so a test may
        check that something did *not* happen. Receiving more events than were pushed
        fails: the count would be wrong.
        """
        self.pushed += pushed
        await self.adapter.wait_events(self.pushed)
        await asyncio.wait_for(self.bot.settle(), SETTLE_S)
        assert self.adapter.events == self.pushed, "more events arrived than were pushed"


@contextlib.asynccontextmanager
async def platform_harness(
    platform: Platform[AdapterT, ServerT],
    server: ServerT,
    settings: Settings,
    *,
    script: Script = echo,
    plugins: list[str] | None = None,
) -> AsyncIterator[Running[AdapterT, ServerT]]:
    """A bot with the fake generator answering through ``platform``'s adapter, connected
    to ``server``; on leaving, intake stops, the bot finishes its turns and closes, then
    the adapter disconnects."""
    generator = FakeGenerator(script, delay=0.01)
    async with testing.open_bot(
        settings.data_dir,
        settings=settings,
        generator=generator,
        plugins=plugins,
        plugin_settings={"moderation": {"blocked_words": ["spoiler"]}},
    ) as bot:
        adapter = platform.adapter(settings)
        await adapter.login()
        await adapter.start(bot)
        try:
            if platform.connected is not None:
                await platform.connected(server, adapter)
            yield Running(server, adapter, generator, bot)
        finally:
            await adapter.stop_intake()
    await adapter.close()


@pytest.fixture
def script() -> Script:
    """What the fake model answers."""
    return echo


@pytest.fixture
def plugins() -> list[str]:
    """The plugins the bot runs."""
    return ["help", "privacy"]


@pytest.fixture
async def server(platform: Platform[Any, Any]) -> AsyncIterator[Any]:
    """The module's fake platform server, started."""
    fake = platform.server()
    await fake.start()
    yield fake
    await fake.stop()


@pytest.fixture
async def running(
    tmp_path: Path,
    platform: Platform[Any, Any],
    server: Any,
    script: Script,
    plugins: list[str],
    request: pytest.FixtureRequest,
) -> AsyncIterator[Running[Any, Any]]:
    """The bot answering on the module's platform, through ``server``."""
    settings = platform.settings(tmp_path, server, getattr(request, "param", None))
    async with platform_harness(
        platform, server, settings, script=script, plugins=plugins
    ) as harness:
        yield harness
