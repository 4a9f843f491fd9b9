"""The Slack adapter end to end: the real slack-bolt app (Socket Mode and HTTP mode), a
fake Slack on 127.0.0.1, and the real core with the fake generator."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from pydantic import SecretStr

from adapters.slack_adapter import EVENTS_PATH, SlackAdapter, to_message
from core import testing
from core.errors import ConfigError
from core.generation.fake import FakeGenerator, Script
from core.settings import Settings
from core.types import PlaceKind
from tests.adapters.fake_slack import (
    APP_TOKEN,
    BOT_ID,
    BOT_TOKEN,
    BOT_USER,
    SIGNING_SECRET,
    TEAM,
    FakeSlack,
    form,
    signed,
    slash_command,
)
from tests.adapters.helpers import settled

PAYLOADS = Path(__file__).parent / "payloads"


@dataclass
class Running:
    fake: FakeSlack
    adapter: SlackAdapter
    generator: FakeGenerator


def slack_settings(tmp_path: Path, fake: FakeSlack, mode: str = "socket") -> Settings:
    extra: dict[str, Any] = (
        {"slack_app_token": SecretStr(APP_TOKEN)}
        if mode == "socket"
        else {"slack_signing_secret": SecretStr(SIGNING_SECRET), "slack_http_port": 0}
    )
    return Settings(
        data_dir=tmp_path / "data",
        cache_dir=tmp_path / "cache",
        slack_bot_token=SecretStr(BOT_TOKEN),
        slack_api_base_url=fake.url + "/api/",
        _env_file=None,  # type: ignore[call-arg]
        **extra,
    )


@pytest.fixture
async def fake() -> AsyncIterator[FakeSlack]:
    server = FakeSlack()
    await server.start()
    yield server
    await server.stop()


@pytest.fixture(params=["socket"])
async def running(
    tmp_path: Path,
    plugins: list[str],
    fake: FakeSlack,
    script: Script,
    request: pytest.FixtureRequest,
) -> AsyncIterator[Running]:
    settings = slack_settings(tmp_path, fake, request.param)
    generator = FakeGenerator(script, delay=0.01)
    async with testing.open_bot(
        settings.data_dir,
        settings=settings,
        generator=generator,
        plugins=plugins,
        plugin_settings={"moderation": {"blocked_words": ["spoiler"]}},
    ) as bot:
        adapter = SlackAdapter(settings)
        await adapter.login()
        await adapter.start(bot)
        if request.param == "socket":
            await fake.wait_connected()
        try:
            yield Running(fake, adapter, generator)
        finally:
            await adapter.stop_intake()
    await adapter.close()


def dm(fake: FakeSlack, text: str, **more: Any) -> dict[str, Any]:
    return fake.event(channel="D0DM0001", channel_type="im", user="U0ALICE", text=text, **more)


async def test_a_direct_message_is_answered_over_socket_mode(running: Running) -> None:
    fake = running.fake
    envelope = await fake.push(dm(fake, "hello there"))
    await fake.wait_for("chat.postMessage")
    await settled(running)
    assert envelope in fake.acks
    assert fake.texts() == ["echo: hello there"]
    (posted,) = fake.sent()
    assert posted["text"] == "…"  # the placeholder that stands in for typing
    assert posted["channel"] == "D0DM0001" and "thread_ts" not in posted


async def test_in_a_channel_only_mentions_are_answered_once(running: Running) -> None:
    fake = running.fake
    await fake.push(
        fake.event(channel="C0GENERAL", channel_type="channel", user="U0BOB", text="lunch anyone?")
    )
    mention = fake.event(
        channel="C0GENERAL",
        channel_type="channel",
        user="U0BOB",
        text=f"<@{BOT_USER}> what do you think?",
    )
    await fake.push(mention)
    # Slack also sends an app_mention event for the same message.
    also = fake.event(**{**mention["event"], "type": "app_mention"})
    await fake.push(also)
    await fake.wait_for("chat.postMessage")
    await settled(running)
    assert fake.texts() == ["echo: U0BOB: what do you think?"]


async def test_a_reply_goes_into_the_thread_the_user_wrote_in(running: Running) -> None:
    fake = running.fake
    await fake.push(
        fake.event(
            channel="C0GENERAL",
            channel_type="channel",
            user="U0BOB",
            text=f"<@{BOT_USER}> and here?",
            thread_ts="1700000000.000100",
        )
    )
    await fake.wait_for("chat.postMessage")
    await settled(running)
    assert {p["thread_ts"] for p in fake.sent()} == {"1700000000.000100"}


@pytest.mark.parametrize("script", [lambda _: " ".join(["word" * 15] * 90)])
async def test_a_long_reply_is_split_at_slacks_limit(running: Running) -> None:
    await running.fake.push(dm(running.fake, "tell me everything"))
    await running.fake.wait_for("chat.postMessage", 2)
    await settled(running)
    parts = running.fake.texts()
    assert len(parts) == 2 and all(len(p) <= 4000 for p in parts)
    assert " ".join(parts) == " ".join(["word" * 15] * 90)


async def test_a_429_is_retried_after_the_time_slack_says(running: Running) -> None:
    fake = running.fake
    fake.fail_next("chat.postMessage", 429, **{"Retry-After": "1"})
    await fake.push(dm(fake, "are you there?"))
    await fake.wait_for("chat.postMessage", 2)
    await settled(running)
    assert fake.texts() == ["echo: are you there?"]


async def test_a_redelivered_event_is_answered_once(running: Running) -> None:
    fake = running.fake
    body = dm(fake, "only once please")
    await fake.push(body)
    await fake.push(body)
    await fake.wait_for("chat.postMessage")
    await settled(running)
    assert fake.texts() == ["echo: only once please"]


async def test_its_own_messages_and_other_bots_are_ignored(running: Running) -> None:
    fake = running.fake
    own = fake.event(
        channel="D0DM0001", channel_type="im", user=BOT_USER, bot_id=BOT_ID, text="my own words"
    )
    other = fake.event(
        channel="D0DM0001",
        channel_type="im",
        subtype="bot_message",
        bot_id="BOTHER",
        text="beep boop",
    )
    await fake.push(own)
    await fake.push(other)
    await fake.push(dm(fake, "a person"))
    await fake.wait_for("chat.postMessage")
    await settled(running)
    assert fake.texts() == ["echo: a person"]


async def test_socket_mode_reconnects_when_slack_asks(running: Running) -> None:
    fake = running.fake
    await fake.disconnect_all()
    await fake.wait_connected(2)
    await fake.push(dm(fake, "after the reconnect"))
    await fake.wait_for("chat.postMessage")
    await settled(running)
    assert fake.texts() == ["echo: after the reconnect"]


async def test_slash_commands_reach_the_core_commands_privately(running: Running) -> None:
    fake = running.fake
    await fake.push(slash_command(fake, "privacy"), kind="slash_commands")
    await fake.wait_for("response_url")
    (answer,) = fake.sent("response_url")
    assert answer["response_type"] == "ephemeral" and "What I keep about you" in answer["text"]


@pytest.mark.parametrize("running", ["http"], indirect=True)
async def test_http_mode_verifies_signatures_and_answers(running: Running) -> None:
    fake, adapter = running.fake, running.adapter
    url = f"http://127.0.0.1:{adapter.http_port}{EVENTS_PATH}"
    body = json.dumps(dm(fake, "over http")).encode()
    async with aiohttp.ClientSession() as http:
        forged = await http.post(url, data=body, headers=signed(body, "not-the-secret"))
        assert forged.status == 401
        stale = await http.post(url, data=body, headers=signed(body, age=600))
        assert stale.status == 401
        challenge = json.dumps({"type": "url_verification", "challenge": "c-123"}).encode()
        verified = await http.post(url, data=challenge, headers=signed(challenge))
        assert (await verified.json())["challenge"] == "c-123"
        assert (await http.post(url, data=body, headers=signed(body))).status == 200
        retry = signed(body) | {"X-Slack-Retry-Num": "1", "X-Slack-Retry-Reason": "timeout"}
        assert (await http.post(url, data=body, headers=retry)).status == 200
        command = form(slash_command(fake, "help"))
        headers = signed(command) | {"Content-Type": "application/x-www-form-urlencoded"}
        assert (await http.post(url, data=command, headers=headers)).status == 200
    await fake.wait_for("chat.postMessage")
    await fake.wait_for("response_url")
    await settled(running)
    assert fake.texts() == ["echo: over http"]
    assert "/forget" in fake.sent("response_url")[0]["text"]


async def test_a_refused_token_fails_at_login_without_showing_it(
    tmp_path: Path, fake: FakeSlack
) -> None:
    fake.token = "xoxb-some-other-token"
    adapter = SlackAdapter(slack_settings(tmp_path, fake))
    with pytest.raises(ConfigError, match="SLACK_BOT_TOKEN was refused") as error:
        await adapter.login()
    assert BOT_TOKEN not in str(error.value)


@pytest.mark.parametrize(
    ("values", "named"),
    [
        ({"slack_bot_token": "xoxp-user-token", "slack_app_token": APP_TOKEN}, "SLACK_BOT_TOKEN"),
        ({"slack_bot_token": BOT_TOKEN, "slack_app_token": "xoxb-wrong"}, "SLACK_APP_TOKEN"),
        ({"slack_bot_token": BOT_TOKEN}, "SLACK_SIGNING_SECRET"),
    ],
)
def test_wrong_credentials_are_named_before_connecting(
    tmp_path: Path, values: dict[str, Any], named: str
) -> None:
    settings = Settings(data_dir=tmp_path, _env_file=None, **values)  # type: ignore[call-arg]
    with pytest.raises(ConfigError, match=named) as error:
        SlackAdapter(settings)
    for secret in values.values():
        assert secret not in str(error.value)


# --- conversion of recorded payloads ----------------------------------------------------
def _recorded(name: str) -> dict[str, Any]:
    body: dict[str, Any] = json.loads((PAYLOADS / f"slack_{name}.json").read_text())
    return body


def test_im_message_becomes_a_dm_in_its_team() -> None:
    body = _recorded("im")
    message = to_message(body["event"], body["team_id"], BOT_USER)
    assert message is not None and message.place.kind is PlaceKind.DM
    assert message.place.workspace == TEAM and message.place.channel == "D0DM0001"
    assert message.text == "is it <really> working & fine?"  # Slack's escapes undone


def test_app_mention_in_a_thread_is_addressed_and_keeps_its_thread() -> None:
    body = _recorded("app_mention_thread")
    message = to_message(body["event"], body["team_id"], BOT_USER)
    assert message is not None and message.mentions_bot and message.text == "summarise please"
    assert message.place.kind is PlaceKind.GROUP and message.place.thread == "1763900000.000200"


def test_edits_and_joins_are_not_turns() -> None:
    body = _recorded("message_changed")
    assert to_message(body["event"], body["team_id"], BOT_USER) is None


def test_file_share_keeps_its_files() -> None:
    body = _recorded("file_share")
    message = to_message(body["event"], body["team_id"], BOT_USER)
    assert message is not None and [a.name for a in message.attachments] == ["notes.txt"]


@pytest.mark.parametrize("plugins", [["moderation", "reminders"]])
async def test_private_notices_are_ephemeral_and_reminders_land_in_the_thread(
    running: Running,
) -> None:
    fake = running.fake
    await fake.push(
        fake.event(
            channel="C0GENERAL",
            channel_type="channel",
            user="U0BOB",
            text=f"<@{BOT_USER}> a spoiler for you",
        )
    )
    await fake.wait_for("chat.postEphemeral")
    (notice,) = fake.sent("chat.postEphemeral")
    assert notice["user"] == "U0BOB" and "blocked" in notice["text"]
    await fake.push(
        fake.event(
            channel="C0GENERAL",
            channel_type="channel",
            user="U0BOB",
            text=f"<@{BOT_USER}> remind me in 1 second to stretch",
            thread_ts="1700000000.000900",
        )
    )
    await fake.wait(lambda: any("Reminder" in t for t in fake.texts()), within=10)
    (reminder,) = [p for p in fake.sent() if "Reminder" in p["text"]]
    assert reminder["channel"] == "C0GENERAL" and reminder["thread_ts"] == "1700000000.000900"
