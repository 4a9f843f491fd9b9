"""/metrics, /healthz and /readyz beside a bot answering on (fake) Telegram."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

from adapters.ops import OpsServer
from adapters.telegram_adapter import TelegramAdapter
from tests.adapters.conftest import Platform, platform_harness
from tests.adapters.fake_telegram import FakeTelegram, person
from tests.adapters.test_telegram import platform, telegram_settings

__all__ = ["platform"]  # the fixture this module's tests use


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of a scrape, parsed by prometheus-client's own parser."""
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


async def _get(url: str) -> tuple[int, Any]:
    async with aiohttp.ClientSession() as http, http.get(url) as response:
        if response.content_type == "application/json":
            return response.status, await response.json()
        return response.status, await response.text()


async def test_a_scrape_counts_the_conversation_and_says_nothing_of_it(
    tmp_path: Path, server: FakeTelegram, platform: Platform[TelegramAdapter, FakeTelegram]
) -> None:
    settings = telegram_settings(tmp_path, server, {"ops_port": 0})
    async with platform_harness(platform, server, settings) as running:
        ops = OpsServer(running.bot, [running.adapter], settings)
        await ops.start()
        try:
            someone = person(7)
            server.update(server.message("SECRET-TEXT how are you?", user=someone))
            server.update(server.message("/help", user=someone))
            await running.settle(pushed=2)
            status, text = await _get(f"{ops.url}/metrics")
            assert status == 200
            assert (await _get(f"{ops.url}/healthz"))[0] == 200
            status, ready = await _get(f"{ops.url}/readyz")
            assert status == 200 and ready["ready"], ready
            assert ready["checks"] == {"engine": "ok", "database": "ok", "telegram": "ok"}
            # a platform that stops taking events in is not ready
            await running.adapter.stop_intake()
            status, ready = await _get(f"{ops.url}/readyz")
            assert status == 503 and ready["checks"]["telegram"] == "not connected"
        finally:
            await ops.close()
    got = samples(text)
    telegram = ("platform", "telegram")
    assert got["socialbot_turns_total", (("outcome", "model"), telegram)] == 1
    assert got["socialbot_turns_total", (("outcome", "command"), telegram)] == 1
    assert got["socialbot_stage_seconds_count", (("stage", "respond"),)] == 1
    assert got["socialbot_stage_seconds_count", (("stage", "guard"),)] == 2
    assert got["socialbot_reply_seconds_count", ()] == 1
    assert got["socialbot_first_piece_seconds_count", ()] == 1
    assert got["socialbot_platform_events_total", (telegram,)] == 2
    assert got["socialbot_platform_malformed_total", (telegram,)] == 0
    assert got["socialbot_platform_connected", (telegram,)] == 1
    assert got["socialbot_conversations_busy", ()] == 0
    assert "process_resident_memory_bytes" in {name for name, _ in got}
    # counts and timings only: no text, no person, no place
    assert "SECRET" not in text and str(someone["id"]) not in text
