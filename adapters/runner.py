"""``socialbot run``: every platform whose token is set, one bot, one process.

Start-up order: check each platform's credentials (a refused token stops here with
one line naming the setting), load the bot and its models, then take events in.
On SIGINT or SIGTERM: stop taking events in, let the bot finish the turns in flight
(their replies go out, their storage is flushed), then disconnect and exit 0.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
from collections.abc import Awaitable, Callable

from adapters.base import PlatformAdapter
from adapters.ops import OpsServer
from adapters.watchdog import Watchdog
from core.bot import Bot
from core.errors import ConfigError
from core.settings import BotProfile, Settings

log = logging.getLogger(__name__)

BotOpener = Callable[[Settings, BotProfile], Awaitable[Bot]]


def configured(settings: Settings) -> list[PlatformAdapter]:
    """An adapter for each platform with a token; a clear error when there is none."""
    adapters: list[PlatformAdapter] = []
    if settings.discord_bot_token.get_secret_value():
        from adapters.discord_adapter import DiscordAdapter

        adapters.append(DiscordAdapter(settings))
    if settings.telegram_bot_token.get_secret_value():
        from adapters.telegram_adapter import TelegramAdapter

        adapters.append(TelegramAdapter(settings))
    if settings.slack_bot_token.get_secret_value():
        from adapters.slack_adapter import SlackAdapter

        adapters.append(SlackAdapter(settings))
    if not adapters:
        raise ConfigError(
            "no platform token is set: put DISCORD_BOT_TOKEN, TELEGRAM_BOT_TOKEN or "
            "SLACK_BOT_TOKEN in .env (see .env.example and the README); "
            "`socialbot chat` needs no token"
        )
    return adapters


async def _open(settings: Settings, profile: BotProfile) -> Bot:
    return await Bot.open(settings, profile)


async def serve(
    settings: Settings,
    profile: BotProfile,
    *,
    stop: asyncio.Event | None = None,
    open_bot: BotOpener = _open,
    ready: Callable[[list[PlatformAdapter]], None] | None = None,
    adapters: list[PlatformAdapter] | None = None,
) -> None:
    """Run until ``stop`` is set (or SIGINT/SIGTERM arrive, when ``stop`` is not given):
    ``adapters``, or every platform with a token."""
    adapters = configured(settings) if adapters is None else adapters
    logged_in: list[PlatformAdapter] = []
    try:
        for adapter in adapters:
            await adapter.login()
            logged_in.append(adapter)
    except BaseException:
        for adapter in logged_in:
            await adapter.close()
        raise
    if stop is None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop.set)
    bot: Bot | None = None
    ops: OpsServer | None = None
    watchdog: Watchdog | None = None
    watching: asyncio.Task[None] | None = None
    try:
        bot = await open_bot(settings, profile)
        if settings.ops_port is not None:  # up first: /readyz says what is not ready yet
            ops = OpsServer(bot, adapters, settings)
            await ops.start()
        for adapter in adapters:
            await adapter.start(bot)
        watchdog = Watchdog(adapters)
        watching = asyncio.create_task(watchdog.run())
        names = ", ".join(a.where for a in adapters)
        if ready is not None:
            ready(adapters)
        else:
            served = f" Metrics and health: {ops.url}/metrics, /readyz." if ops else ""
            print(
                f"socialbot: {profile.name} is answering on {names}.{served} Ctrl-C stops it.",
                file=sys.stderr,
                flush=True,
            )
        await stop.wait()
        log.info("stopping: finishing the turns in flight")
    finally:
        if watching is not None:
            watching.cancel()
            await asyncio.gather(watching, return_exceptions=True)
        if watchdog is not None:
            await watchdog.close()
        for adapter in adapters:
            try:
                await adapter.stop_intake()
            except Exception:
                log.exception("%s: could not stop taking events in", adapter.platform)
        if bot is not None:
            await bot.close()  # finishes accepted turns, then closes the database
        for adapter in adapters:
            try:
                await adapter.close()
            except Exception:
                log.exception("%s: could not disconnect cleanly", adapter.platform)
        if ops is not None:
            await ops.close()
