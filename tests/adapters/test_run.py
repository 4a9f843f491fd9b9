"""``socialbot run``: all three platforms in one process, against the loopback fakes."""

from __future__ import annotations

import asyncio
import signal
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from adapters.base import PlatformAdapter
from adapters.runner import configured, serve
from core import testing
from core.bot import Bot
from core.errors import ConfigError
from core.generation.fake import FakeGenerator
from core.memory.longterm import FakeEmbedder
from core.settings import BotProfile, Settings
from tests.adapters import fake_discord, fake_slack, fake_telegram
from tests.adapters.fake_discord import DM_CHANNEL, FakeDiscord
from tests.adapters.fake_slack import FakeSlack
from tests.adapters.fake_telegram import FakeTelegram
from tests.adapters.helpers import without_platform_env


@dataclass
class Fakes:
    discord: FakeDiscord
    telegram: FakeTelegram
    slack: FakeSlack

    def env(self) -> dict[str, str]:
        """The settings that point socialbot at these fakes, as environment variables."""
        return {
            "DISCORD_BOT_TOKEN": fake_discord.TOKEN,
            "DISCORD_API_BASE_URL": self.discord.api,
            "DISCORD_GATEWAY_URL": self.discord.gateway,
            "TELEGRAM_BOT_TOKEN": fake_telegram.TOKEN,
            "TELEGRAM_API_BASE_URL": self.telegram.url,
            "SLACK_BOT_TOKEN": fake_slack.BOT_TOKEN,
            "SLACK_APP_TOKEN": fake_slack.APP_TOKEN,
            "SLACK_API_BASE_URL": self.slack.url + "/api/",
        }

    async def say_hello_everywhere(self) -> None:
        await self.discord.dispatch(
            "MESSAGE_CREATE", self.discord.message("hello discord", channel=DM_CHANNEL, guild=False)
        )
        self.telegram.update(self.telegram.message("hello telegram"))
        await self.slack.push(
            self.slack.event(channel="D0DM0001", channel_type="im", user="U0A", text="hello slack")
        )


@pytest.fixture
async def fakes() -> AsyncIterator[Fakes]:
    servers = Fakes(FakeDiscord(), FakeTelegram(), FakeSlack())
    for server in (servers.discord, servers.telegram, servers.slack):
        await server.start()
    yield servers
    for server in (servers.discord, servers.telegram, servers.slack):
        await server.stop()


def settings_for(tmp_path: Path, fakes: Fakes) -> Settings:
    values: dict[str, Any] = {k.lower(): v for k, v in fakes.env().items()}
    return Settings(data_dir=tmp_path / "data", _env_file=None, **values)  # type: ignore[call-arg]


async def test_run_answers_on_all_three_platforms_and_finishes_turns_on_stop(
    tmp_path: Path, fakes: Fakes, profile: BotProfile
) -> None:
    settings = settings_for(tmp_path, fakes)
    generator = FakeGenerator(delay=0.02)
    stop = asyncio.Event()
    started = asyncio.Event()

    async def open_bot(settings: Settings, profile: BotProfile) -> Bot:
        emotions = testing.FakeEmotionReader()
        return await Bot.open(
            settings, profile, generator=generator, embedder=FakeEmbedder(), emotions=emotions
        )

    def ready(adapters: list[PlatformAdapter]) -> None:
        assert sorted(a.platform for a in adapters) == ["discord", "slack", "telegram"]
        started.set()

    running = asyncio.create_task(
        serve(settings, profile, stop=stop, open_bot=open_bot, ready=ready)
    )
    await asyncio.wait_for(started.wait(), 20)
    await fakes.discord.wait(lambda: bool(fakes.discord.identifies))
    await fakes.slack.wait_connected()
    await fakes.say_hello_everywhere()
    await fakes.discord.wait(lambda: "echo: hello discord" in fakes.discord.texts())
    await fakes.telegram.wait_for("sendMessage")
    await fakes.slack.wait_for("chat.update")

    # A slow reply is in flight when the stop comes: it is finished and sent, then we exit.
    generator.delay = 0.3
    fakes.telegram.update(fakes.telegram.message("one more, slowly"))
    await fakes.telegram.wait_for("sendChatAction", 2)
    stop.set()
    await asyncio.wait_for(running, 30)
    assert "echo: one more, slowly" in fakes.telegram.texts()
    assert "echo: hello telegram" in fakes.telegram.texts()
    assert "echo: hello slack" in fakes.slack.texts()


def test_without_any_token_run_says_what_to_set(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="DISCORD_BOT_TOKEN, TELEGRAM_BOT_TOKEN or SLACK_BOT"):
        configured(Settings(data_dir=tmp_path, _env_file=None))  # type: ignore[call-arg]


def test_only_platforms_with_a_token_are_started(tmp_path: Path) -> None:
    settings = Settings(
        data_dir=tmp_path,
        telegram_bot_token=SecretStr(fake_telegram.TOKEN),
        _env_file=None,  # type: ignore[call-arg]
    )
    assert [a.platform for a in configured(settings)] == ["telegram"]


async def _socialbot(tmp_path: Path, env: dict[str, str], *args: str) -> asyncio.subprocess.Process:
    clean = without_platform_env()
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "core",
        "run",
        "--data-dir",
        str(tmp_path / "data"),
        *args,
        env={**clean, "HF_HUB_OFFLINE": "1", **env},
        cwd=tmp_path,  # no .env of the developer's is read
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )


async def test_a_refused_token_stops_run_with_one_line_and_no_secret(
    tmp_path: Path, fakes: Fakes
) -> None:
    fakes.telegram.token = "111:someone-elses-token-entirely-different-xx"
    env = {k: v for k, v in fakes.env().items() if k.startswith("TELEGRAM")}
    process = await _socialbot(tmp_path, env)
    out, err = await asyncio.wait_for(process.communicate(), 120)
    assert process.returncode == 2
    lines = err.decode().strip().splitlines()
    assert lines == [
        "socialbot: TELEGRAM_BOT_TOKEN was refused by Telegram: check it with @BotFather"
    ]
    secret = fake_telegram.TOKEN.split(":")[1]
    assert secret not in err.decode() and secret not in out.decode()


@pytest.mark.model
async def test_socialbot_run_answers_everywhere_with_the_real_model_and_stops_on_sigterm(
    tmp_path: Path, fakes: Fakes, model_cache: Path
) -> None:
    process = await _socialbot(
        tmp_path, {**fakes.env(), "SOCIALBOT_CACHE_DIR": str(model_cache)}, "-v"
    )
    try:
        await fakes.slack.wait_connected(within=240)
        await fakes.discord.wait(lambda: bool(fakes.discord.identifies), within=60)
        await fakes.say_hello_everywhere()
        await fakes.discord.wait(lambda: len(fakes.discord.sent()) >= 1, within=120)
        await fakes.telegram.wait_for("sendMessage", within=120)
        await fakes.slack.wait_for("chat.postMessage", within=120)
    finally:
        # No pause: every reply has begun (its first message is out), so SIGTERM lands
        # with the turns in flight, and `socialbot run` finishes them before it exits.
        process.send_signal(signal.SIGTERM)
        out, err = await asyncio.wait_for(process.communicate(), 120)
    log = err.decode()
    assert process.returncode == 0, log[-3000:]
    for platform in (fakes.discord, fakes.telegram, fakes.slack):
        assert all(text.strip() for text in platform.texts())
    for secret in (
        fake_discord.TOKEN,
        fake_telegram.TOKEN,
        fake_slack.BOT_TOKEN,
        fake_slack.APP_TOKEN,
    ):
        assert secret not in log and secret not in out.decode()
