"""The watchdog against the fake Telegram Bot API going silent without closing."""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path

import pytest

from adapters.ops import PlatformCollector
from adapters.telegram_adapter import TelegramAdapter
from adapters.watchdog import Watchdog
from core import testing
from core.settings import Settings
from tests.adapters.conftest import Platform, platform_harness
from tests.adapters.fake_telegram import FakeTelegram
from tests.adapters.test_telegram import telegram_settings

HEARTBEAT = 1.0
"""The long poll's length in this test (10 s in production)."""


def quick_telegram(settings: Settings) -> TelegramAdapter:
    adapter = TelegramAdapter(settings)
    adapter.poll_timeout_s = HEARTBEAT
    return adapter


@pytest.fixture
def platform() -> Platform[TelegramAdapter, FakeTelegram]:
    return Platform(FakeTelegram, telegram_settings, quick_telegram)


async def test_a_silent_long_poll_is_restarted_within_twice_its_heartbeat(
    tmp_path: Path,
    server: FakeTelegram,
    platform: Platform[TelegramAdapter, FakeTelegram],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="adapters.watchdog")
    async with platform_harness(platform, server, telegram_settings(tmp_path, server)) as running:
        adapter = running.adapter
        watchdog = Watchdog([adapter], every=0.05)
        watching = asyncio.create_task(watchdog.run())
        try:
            server.update(server.message("hello"))
            await running.settle(pushed=1)
            assert adapter.connected and adapter.restarts == 0
            # the connection goes quiet: polls are taken in and never answered
            server.silent = True
            await testing.until(lambda: adapter.restarts >= 1, within=10)
            quiet_for = time.monotonic() - (adapter._updates.answered_at or 0)
            assert not adapter.connected
            assert "no sign of life" in caplog.text
            (family,) = [
                f for f in PlatformCollector([adapter]).collect() if f.name.endswith("connected")
            ]
            assert family.samples[0].value == 0
            # the platform answers again: the restarted poller takes messages in again
            await server.speak_again()
            await testing.until(lambda: adapter.connected, within=15)
            server.update(server.message("are you back?"))
            await running.settle(pushed=1)
            assert server.texts()[-1] == "echo: are you back?"
            assert "receiving again" in caplog.text
        finally:
            watching.cancel()
            await asyncio.gather(watching, return_exceptions=True)
            await watchdog.close()
    # restarted within twice the heartbeat of the last answer (1.5 and one look, measured)
    assert quiet_for <= 2 * HEARTBEAT, quiet_for
