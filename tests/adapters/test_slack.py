"""The Slack adapter end to end: the real slack-bolt app (Socket Mode and HTTP mode), a
fake Slack on 127.0.0.1, and the real core with the fake generator."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any, TypeAlias

import aiohttp
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import SecretStr

from adapters.slack_adapter import EVENTS_PATH, SlackAdapter, to_message
from core import testing
from core.errors import ConfigError
from core.settings import Settings
from core.types import PlaceKind
from tests.adapters.conftest import Platform, Running, platform_harness
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
from tests.adapters.helpers import FUZZ, json_values

PAYLOADS = Path(__file__).parent / "payloads"

Slack: TypeAlias = Running[SlackAdapter, FakeSlack]


def slack_settings(tmp_path: Path, server: FakeSlack, mode: str | None = None) -> Settings:
    """Settings for Socket Mode (the default) or for the HTTP Events API (``"http"``)."""
    extra: dict[str, Any] = (
        {"slack_signing_secret": SecretStr(SIGNING_SECRET), "slack_http_port": 0}
        if mode == "http"
        else {"slack_app_token": SecretStr(APP_TOKEN)}
    )
    return testing.settings_for(
        tmp_path / "data",
        slack_bot_token=SecretStr(BOT_TOKEN),
        slack_api_base_url=server.url + "/api/",
        **extra,
    )


async def socket_connected(server: FakeSlack, adapter: SlackAdapter) -> None:
    if adapter.socket_mode:
        await server.wait_connected()


@pytest.fixture
def platform() -> Platform[SlackAdapter, FakeSlack]:
    return Platform(FakeSlack, slack_settings, SlackAdapter, socket_connected)


def dm(server: FakeSlack, text: str, **more: Any) -> dict[str, Any]:
    return server.event(channel="D0DM0001", channel_type="im", user="U0ALICE", text=text, **more)


async def test_a_direct_message_is_answered_over_socket_mode(running: Slack) -> None:
    server = running.server
    envelope = await server.push(dm(server, "hello there"))
    await running.settle(pushed=1)
    await server.wait(lambda: envelope in server.acks)
    assert server.texts() == ["echo: hello there"]
    (posted,) = server.sent()
    assert posted["text"] == "…"  # the placeholder that stands in for typing
    assert posted["channel"] == "D0DM0001" and "thread_ts" not in posted


async def test_in_a_channel_only_mentions_are_answered_once(running: Slack) -> None:
    server = running.server
    await server.push(
        server.event(
            channel="C0GENERAL", channel_type="channel", user="U0BOB", text="lunch anyone?"
        )
    )
    mention = server.event(
        channel="C0GENERAL",
        channel_type="channel",
        user="U0BOB",
        text=f"<@{BOT_USER}> what do you think?",
    )
    await server.push(mention)
    # Slack also sends an app_mention event for the same message.
    also = server.event(**{**mention["event"], "type": "app_mention"})
    await server.push(also)
    await running.settle(pushed=3)
    assert server.texts() == ["echo: U0BOB: what do you think?"]


async def test_a_reply_goes_into_the_thread_the_user_wrote_in(running: Slack) -> None:
    server = running.server
    await server.push(
        server.event(
            channel="C0GENERAL",
            channel_type="channel",
            user="U0BOB",
            text=f"<@{BOT_USER}> and here?",
            thread_ts="1700000000.000100",
        )
    )
    await running.settle(pushed=1)
    assert {p["thread_ts"] for p in server.sent()} == {"1700000000.000100"}


@pytest.mark.parametrize("script", [lambda _: " ".join(["word" * 15] * 90)])
async def test_a_long_reply_is_split_at_slacks_limit(running: Slack) -> None:
    await running.server.push(dm(running.server, "tell me everything"))
    await running.settle(pushed=1)
    parts = running.server.texts()
    assert len(parts) == 2 and all(len(p) <= 4000 for p in parts)
    assert " ".join(parts) == " ".join(["word" * 15] * 90)


async def test_a_429_is_retried_after_the_time_slack_says(running: Slack) -> None:
    server = running.server
    server.fail_next("chat.postMessage", 429, **{"Retry-After": "1"})
    await server.push(dm(server, "are you there?"))
    await running.settle(pushed=1)
    assert len(server.sent()) == 2  # the first try was refused, the retry landed
    assert server.texts() == ["echo: are you there?"]


async def test_a_redelivered_event_is_answered_once(running: Slack) -> None:
    server = running.server
    body = dm(server, "only once please")
    await server.push(body)
    await server.push(body)
    await running.settle(pushed=2)
    assert server.texts() == ["echo: only once please"]


async def test_its_own_messages_and_other_bots_are_ignored(running: Slack) -> None:
    server = running.server
    own = server.event(
        channel="D0DM0001", channel_type="im", user=BOT_USER, bot_id=BOT_ID, text="my own words"
    )
    other = server.event(
        channel="D0DM0001",
        channel_type="im",
        subtype="bot_message",
        bot_id="BOTHER",
        text="beep boop",
    )
    # slack-bolt drops the app's own events before any listener: its ack says it is done
    ours = await server.push(own)
    await server.wait(lambda: ours in server.acks)
    await server.push(other)
    await server.push(dm(server, "a person"))
    await running.settle(pushed=2)
    assert server.texts() == ["echo: a person"]


async def test_socket_mode_reconnects_when_slack_asks(running: Slack) -> None:
    server = running.server
    await server.disconnect_all()
    await server.wait_connected(2)
    await server.push(dm(server, "after the reconnect"))
    await running.settle(pushed=1)
    assert server.texts() == ["echo: after the reconnect"]


async def test_slash_commands_reach_the_core_commands_privately(running: Slack) -> None:
    server = running.server
    await server.push(slash_command(server, "privacy"), kind="slash_commands")
    await running.settle(pushed=1)
    assert not server.sent()  # nothing in the channel
    (answer,) = server.sent("response_url")
    assert answer["response_type"] == "ephemeral" and "What I keep about you" in answer["text"]


@pytest.mark.parametrize("running", ["http"], indirect=True)
async def test_http_mode_verifies_signatures_and_answers(running: Slack) -> None:
    server, adapter = running.server, running.adapter
    url = f"http://127.0.0.1:{adapter.http_port}{EVENTS_PATH}"
    body = json.dumps(dm(server, "over http")).encode()
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
        command = form(slash_command(server, "help"))
        headers = signed(command) | {"Content-Type": "application/x-www-form-urlencoded"}
        assert (await http.post(url, data=command, headers=headers)).status == 200
    # the event, its retry (received, then dropped) and the command; not the refused ones
    await running.settle(pushed=3)
    assert server.texts() == ["echo: over http"]
    assert "/forget" in server.sent("response_url")[0]["text"]


async def test_a_refused_token_fails_at_login_without_showing_it(
    tmp_path: Path, server: FakeSlack
) -> None:
    server.token = "xoxb-some-other-token"
    adapter = SlackAdapter(slack_settings(tmp_path, server))
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
    running: Slack,
) -> None:
    server = running.server
    await server.push(
        server.event(
            channel="C0GENERAL",
            channel_type="channel",
            user="U0BOB",
            text=f"<@{BOT_USER}> a spoiler for you",
        )
    )
    await running.settle(pushed=1)
    (notice,) = server.sent("chat.postEphemeral")
    assert notice["user"] == "U0BOB" and "blocked" in notice["text"]
    await server.push(
        server.event(
            channel="C0GENERAL",
            channel_type="channel",
            user="U0BOB",
            text=f"<@{BOT_USER}> remind me in 1 second to stretch",
            thread_ts="1700000000.000900",
        )
    )
    await server.wait(lambda: any("Reminder" in t for t in server.texts()), within=10)
    await running.settle(pushed=1)
    (reminder,) = [p for p in server.sent() if "Reminder" in p["text"]]
    assert reminder["channel"] == "C0GENERAL" and reminder["thread_ts"] == "1700000000.000900"


# --- what cannot be read, over HTTP ------------------------------------------------------
FORM = "application/x-www-form-urlencoded"
SIGNED_GARBAGE: dict[str, tuple[bytes, str]] = {
    "not JSON": (b'{"type": "event_callback", SECRET-TEXT', "application/json"),
    "a JSON list": (b'[{"type": "event_callback"}]', "application/json"),
    "a JSON string": (b'"SECRET-TEXT"', "application/json"),
    "not UTF-8": (b'{"type": "\xff\xfe SECRET-TEXT"}', "application/json"),
    "nested 100 000 deep": (b'{"a":' * 100_000 + b"1" + b"}" * 100_000, "application/json"),
    "a form whose payload is not JSON": (
        b"payload=SECRET-TEXT",
        "application/x-www-form-urlencoded",
    ),
    "a form whose payload is a list": (b"payload=%5B1%5D", "application/x-www-form-urlencoded"),
    "an event that is a string": (b'{"type": "event_callback", "event": "x"}', "application/json"),
    "authorizations that are a string": (
        b'{"type": "event_callback", "authorizations": "x", "event": {"type": "message"}}',
        "application/json",
    ),
    "block actions that are a string": (
        b'{"type": "block_actions", "actions": "x"}',
        "application/json",
    ),
}


@pytest.mark.parametrize("running", ["http"], indirect=True)
async def test_http_mode_refuses_what_it_cannot_read_without_500s_or_tracebacks(
    running: Slack, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="adapters")
    caplog.set_level(logging.INFO)
    server, adapter = running.server, running.adapter
    url = f"http://127.0.0.1:{adapter.http_port}{EVENTS_PATH}"
    statuses: dict[str, int] = {}
    async with aiohttp.ClientSession() as http:
        unsigned = [b"not json at all", b"[1, 2]", b"\xff\xfe\xfd", b"", b"{}"]
        for body in unsigned:  # checked first: anyone can send these
            for headers in (
                {"Content-Type": "application/json"},
                signed(body, "not-the-secret"),
                {"X-Slack-Request-Timestamp": "soon", "X-Slack-Signature": "v0=00"},
            ):
                async with http.post(url, data=body, headers=headers) as response:
                    assert response.status == 401, body
        for name, (body, content_type) in SIGNED_GARBAGE.items():
            headers = signed(body) | {"Content-Type": content_type}
            async with http.post(url, data=body, headers=headers) as response:
                statuses[name] = response.status
        # the same again: refused again, not logged again
        body, content_type = SIGNED_GARBAGE["not JSON"]
        async with http.post(url, data=body, headers=signed(body)) as response:
            assert response.status == 400
        bad_event = server.event(channel=["D0DM0001"], user="U0ALICE", text="SECRET-TEXT")
        good = json.dumps(dm(server, "still answering")).encode()
        for body in (json.dumps(bad_event).encode(), good):
            async with http.post(url, data=body, headers=signed(body)) as response:
                assert response.status in (200, 400)
    assert statuses == dict.fromkeys(SIGNED_GARBAGE, 400)
    # each signed body counted once as received, the bad and the good event too
    await running.settle(pushed=len(SIGNED_GARBAGE) + 2)
    assert server.texts() == ["echo: still answering"]
    assert adapter.malformed == len(SIGNED_GARBAGE) + 1
    records = caplog.records
    assert not [r for r in records if r.exc_info or r.levelno >= logging.ERROR]
    text = "\n".join(r.getMessage() for r in records)
    assert "SECRET-TEXT" not in text and "Traceback" not in text
    assert SIGNING_SECRET not in text and BOT_TOKEN not in text
    assert len([r for r in records if "without a valid signature" in r.getMessage()]) == 1
    assert len([r for r in records if "slack: skipped" in r.getMessage()]) == adapter.malformed


_leaves = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8)
_FIELDS = ["type", "event", "event_id", "team_id", "channel", "user", "text", "ts", "payload"]
_keys = st.sampled_from(_FIELDS) | st.text(max_size=6)
_json = json_values(_leaves, _keys, list_size=4, object_size=5, max_leaves=24)
_bodies = (
    st.dictionaries(
        st.sampled_from(_FIELDS[:3]), st.sampled_from(["event_callback", "message"]) | _json
    )
    | _json
)


@settings(FUZZ, max_examples=25)
@given(content=_bodies)
@pytest.mark.parametrize("running", ["http"], indirect=True)
async def test_random_signed_bodies_get_no_5xx_and_the_next_message_is_answered(
    running: Slack, caplog: pytest.LogCaptureFixture, content: Any
) -> None:
    caplog.set_level(logging.WARNING)
    server, adapter = running.server, running.adapter
    url = f"http://127.0.0.1:{adapter.http_port}{EVENTS_PATH}"
    body = json.dumps(content).encode()
    good_text = f"after {len(server.texts())}"
    good = json.dumps(dm(server, good_text)).encode()
    async with aiohttp.ClientSession() as http:
        async with http.post(url, data=body, headers=signed(body)) as response:
            assert response.status < 500
        async with http.post(url, data=good, headers=signed(good)) as response:
            assert response.status == 200
    await server.wait(lambda: f"echo: {good_text}" in server.texts())
    records = [r for r in caplog.records if r.name.startswith(("adapters", "slack", "core"))]
    assert not [r for r in records if r.exc_info or r.levelno >= logging.ERROR]


async def test_after_a_kill_a_half_shown_reply_is_finished_in_its_message(
    tmp_path: Path, server: FakeSlack, platform: Platform[SlackAdapter, FakeSlack]
) -> None:
    settings = slack_settings(tmp_path, server)
    event = dm(server, "are you there?")
    asked = to_message(event["event"], TEAM, BOT_USER)
    assert asked is not None
    # what a kill leaves: the event acknowledged, the reply's placeholder edited half way
    async with testing.open_bot(settings.data_dir, settings=settings) as bot:
        entry = await bot.inbox.accept(asked)
        assert entry is not None
        await bot.inbox.shown(entry, "1700000000.000555", "echo: are")
    async with platform_harness(platform, server, settings) as running:
        await server.wait(lambda: "echo: are you there?" in server.texts())
        await running.bot.settle()
    (update,) = server.sent("chat.update")
    assert update["ts"] == "1700000000.000555" and update["text"] == "echo: are you there?"
    assert not server.sent()  # no placeholder, nothing posted anew
