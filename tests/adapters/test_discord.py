"""The Discord adapter end to end: the real discord.py client (its HTTP, rate-limit and
gateway code), a fake REST API and gateway on 127.0.0.1, and the real core with the
fake generator."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any, TypeAlias

import discord
import pytest
from pydantic import SecretStr

from adapters.discord_adapter import DiscordAdapter, intents, to_message
from core import testing
from core.errors import ConfigError
from core.settings import Settings
from core.types import PlaceKind
from tests.adapters.conftest import Platform, Running
from tests.adapters.fake_discord import (
    BOT_USER,
    CHANNEL,
    DM_CHANNEL,
    GUILD,
    THREAD,
    TOKEN,
    FakeDiscord,
    guild_create,
    user,
)

PAYLOADS = Path(__file__).parent / "payloads"

Discord: TypeAlias = Running[DiscordAdapter, FakeDiscord]


def discord_settings(
    tmp_path: Path, server: FakeDiscord, more: dict[str, Any] | None = None
) -> Settings:
    return Settings(
        data_dir=tmp_path / "data",
        cache_dir=tmp_path / "cache",
        discord_bot_token=SecretStr(TOKEN),
        discord_api_base_url=server.api,
        discord_gateway_url=server.gateway,
        _env_file=None,  # type: ignore[call-arg]
        **(more or {}),
    )


def quick_adapter(settings: Settings) -> DiscordAdapter:
    """An adapter that does not wait long for the fake gateway's guilds."""
    return DiscordAdapter(settings, ready_timeout=0.1)


@pytest.fixture
def platform() -> Platform[DiscordAdapter, FakeDiscord]:
    return Platform(FakeDiscord, discord_settings, quick_adapter)


def addressed(server: FakeDiscord, text: str, **more: Any) -> dict[str, Any]:
    """A guild message that mentions the bot."""
    return server.message(f"<@{BOT_USER['id']}> {text}", mentions=[BOT_USER], **more)


def reply_to(
    server: FakeDiscord, original: dict[str, Any], text: str, **extra: Any
) -> dict[str, Any]:
    """A message in the channel that replies to ``original`` (Discord's type 19)."""
    return server.message(
        text,
        type=19,
        message_reference={"message_id": original["id"], "channel_id": CHANNEL, "guild_id": GUILD},
        referenced_message=original,
        **extra,
    )


async def test_a_direct_message_is_answered_as_a_reply_after_typing(running: Discord) -> None:
    server = running.server
    sent = server.message("hello there", channel=DM_CHANNEL, guild=False)
    await server.dispatch("MESSAGE_CREATE", sent)
    await running.settle(pushed=1)
    assert server.texts() == ["echo: hello there"]
    (reply,) = server.sent()
    assert str(reply["message_reference"]["message_id"]) == sent["id"]
    assert reply["allowed_mentions"]["parse"] == []  # generated text never pings anyone
    paths = [c.path for c in server.calls]
    assert paths.index(f"/channels/{DM_CHANNEL}/typing") < paths.index(
        f"/channels/{DM_CHANNEL}/messages"
    )


async def test_in_a_guild_channel_mentions_and_replies_to_the_bot_are_answered(
    running: Discord,
) -> None:
    server = running.server
    await server.dispatch("MESSAGE_CREATE", server.message("just chatting, no bot needed"))
    await server.dispatch("MESSAGE_CREATE", addressed(server, "what do you think?"))
    await running.settle(pushed=2)
    assert server.texts() == ["echo: User 1: what do you think?"]  # not the chat

    earlier = server.message("an earlier answer", author=BOT_USER)
    reply = reply_to(server, earlier, "thanks, and one more thing")
    await server.dispatch("MESSAGE_CREATE", reply)
    await running.settle(pushed=1)
    assert server.texts()[1:] == ["echo: User 1: thanks, and one more thing"]


@pytest.mark.parametrize("running", [{"admins": f"discord:{user(2)['id']}"}], indirect=True)
async def test_an_admin_blocks_someone_by_replying_to_their_message(running: Discord) -> None:
    server = running.server
    troll = server.message("something nasty")
    await server.dispatch("MESSAGE_CREATE", troll)
    await server.dispatch("MESSAGE_CREATE", reply_to(server, troll, "/block", author=user(2)))
    await server.wait_sent()
    await server.dispatch("MESSAGE_CREATE", addressed(server, "hello?"))
    await running.settle(pushed=3)
    assert len(server.texts()) == 1  # the blocked person's mention is not answered
    # replying to the bot's own message does not name the bot
    own = server.message("something the bot said", author=BOT_USER)
    await server.dispatch("MESSAGE_CREATE", reply_to(server, own, "/block", author=user(2)))
    await running.settle(pushed=1)
    troll_id = user(1)["id"]
    assert server.texts()[0] == (
        f"Blocked discord:{troll_id}: I won't answer them or keep anything they say. "
        f"/unblock discord:{troll_id} to undo."
    )
    assert len(server.texts()) == 2 and "Usage: /block WHO" in server.texts()[1]


async def test_a_thread_is_its_own_conversation_and_the_reply_lands_in_it(
    running: Discord,
) -> None:
    server = running.server
    await server.dispatch("MESSAGE_CREATE", addressed(server, "in the thread", channel=THREAD))
    await running.settle(pushed=1)
    assert [c.path for c in server.calls if c.method == "POST" and "messages" in c.path] == [
        f"/channels/{THREAD}/messages"
    ]
    bot = running.bot
    sample = testing.message("", platform="discord", channel=CHANNEL, workspace=GUILD)
    in_thread = await testing.history(
        bot, replace(sample, place=replace(sample.place, thread=THREAD))
    )
    in_channel = await testing.history(bot, sample)
    assert [t.text for t in in_thread] == ["in the thread", "echo: User 1: in the thread"]
    assert in_channel == []  # the thread is a conversation of its own


@pytest.mark.parametrize("script", [lambda _: " ".join(["word" * 15] * 60)])
async def test_a_long_reply_is_split_at_discords_limit(running: Discord) -> None:
    server = running.server
    await server.dispatch(
        "MESSAGE_CREATE", server.message("everything", channel=DM_CHANNEL, guild=False)
    )
    await running.settle(pushed=1)
    parts = server.texts()
    assert len(parts) == 2 and all(len(p) <= 2000 for p in parts)
    assert " ".join(parts) == " ".join(["word" * 15] * 60)
    assert not any(c.body.get("refused") for c in server.calls)


@pytest.mark.parametrize("script", [lambda _: "a reply that is streamed word by word " * 5])
async def test_replies_are_streamed_by_editing_one_message(running: Discord) -> None:
    server = running.server
    running.generator.delay = 0.06
    await server.dispatch("MESSAGE_CREATE", server.message("go", channel=DM_CHANNEL, guild=False))
    await running.settle(pushed=1)
    assert server.sent("PATCH", "")
    assert len(server.sent()) == 1  # one message, edited as the reply grew
    assert server.texts() == [("a reply that is streamed word by word " * 5).strip()]


async def test_a_429_is_retried_by_discord_py_and_the_reply_arrives(running: Discord) -> None:
    server = running.server
    server.rate_limit_next = 1
    await server.dispatch(
        "MESSAGE_CREATE", server.message("busy?", channel=DM_CHANNEL, guild=False)
    )
    await running.settle(pushed=1)
    assert server.texts() == ["echo: busy?"]
    assert any(c.body.get("rate_limited") for c in server.calls)


async def test_its_own_messages_and_other_bots_are_ignored(running: Discord) -> None:
    server = running.server
    own = server.message("my own words", author=BOT_USER, channel=DM_CHANNEL, guild=False)
    other = server.message("beep", author=user(7, bot=True), channel=DM_CHANNEL, guild=False)
    person = server.message("a person", channel=DM_CHANNEL, guild=False)
    for data in (own, other, person):
        await server.dispatch("MESSAGE_CREATE", data)
    await running.settle(pushed=3)
    assert server.texts() == ["echo: a person"]


async def test_a_redelivered_message_is_answered_once(running: Discord) -> None:
    server = running.server
    data = server.message("only once", channel=DM_CHANNEL, guild=False)
    await server.dispatch("MESSAGE_CREATE", data)
    await server.dispatch("MESSAGE_CREATE", data)
    await running.settle(pushed=2)
    assert server.texts() == ["echo: only once"]


async def test_the_gateway_reconnects_after_a_drop(running: Discord) -> None:
    server = running.server
    await server.drop_connections()
    await server.wait_sessions(2, within=20)  # the dropped one is gone, the new one is up
    await server.dispatch(
        "MESSAGE_CREATE", server.message("back?", channel=DM_CHANNEL, guild=False)
    )
    await running.settle(pushed=1)
    assert server.texts() == ["echo: back?"]


async def test_commands_reach_the_core_commands(running: Discord) -> None:
    server = running.server
    await server.dispatch(
        "MESSAGE_CREATE", server.message("/privacy", channel=DM_CHANNEL, guild=False)
    )
    await running.settle(pushed=1)
    assert server.texts()[0].startswith("What I keep about you")


@pytest.mark.parametrize("running", [{"discord_sharded": True}], indirect=True)
async def test_sharded_client_identifies_with_its_shard(running: Discord) -> None:
    assert isinstance(running.adapter.client, discord.AutoShardedClient)
    assert running.server.identifies[0]["shard"] == [0, 1]
    server = running.server
    await server.dispatch(
        "MESSAGE_CREATE", server.message("sharded", channel=DM_CHANNEL, guild=False)
    )
    await running.settle(pushed=1)
    assert server.texts() == ["echo: sharded"]


def test_the_gateway_asks_for_message_content() -> None:
    wanted = intents()
    assert wanted.message_content and wanted.dm_messages and wanted.guild_messages


async def test_a_refused_token_fails_at_login_without_showing_it(
    tmp_path: Path, server: FakeDiscord
) -> None:
    server.token = "another." + TOKEN
    adapter = DiscordAdapter(discord_settings(tmp_path, server))
    with pytest.raises(ConfigError, match="DISCORD_BOT_TOKEN was refused") as error:
        await adapter.login()
    assert TOKEN not in str(error.value)
    await adapter.close()


def test_a_malformed_token_is_refused_before_connecting(tmp_path: Path) -> None:
    settings = Settings(
        data_dir=tmp_path,
        discord_bot_token=SecretStr("oops"),
        _env_file=None,  # type: ignore[call-arg]
    )
    with pytest.raises(ConfigError, match="DISCORD_BOT_TOKEN"):
        DiscordAdapter(settings)


# --- conversion of recorded payloads ----------------------------------------------------
def _recorded(name: str) -> discord.Message:
    """A discord.py message built from a recorded gateway payload, as the client would."""
    client = discord.Client(intents=intents())
    state = client._connection
    state.user = discord.ClientUser(state=state, data=BOT_USER)  # type: ignore[arg-type]
    state._add_guild_from_data(guild_create())  # type: ignore[arg-type]
    data = json.loads((PAYLOADS / f"discord_{name}.json").read_text())["d"]
    if "guild_id" in data:
        guild = state._get_guild(int(data["guild_id"]))
        assert guild is not None
        channel: Any = guild.get_channel_or_thread(int(data["channel_id"]))
    else:
        recipient: Any = {"id": data["channel_id"], "type": 1, "recipients": [data["author"]]}
        channel = discord.DMChannel(
            me=state.user,
            state=state,
            data=recipient,
        )
    return discord.Message(state=state, channel=channel, data=data)


def test_guild_mention_is_stripped_and_the_place_is_the_guild_channel() -> None:
    native = _recorded("guild_mention")
    message = to_message(native, native._state.user)  # type: ignore[arg-type]
    assert message is not None and message.mentions_bot and message.text == "how are you?"
    assert message.place.kind is PlaceKind.GROUP
    assert (message.place.workspace, message.place.channel) == (GUILD, CHANNEL)


def test_thread_message_keeps_its_parent_channel_and_thread() -> None:
    native = _recorded("thread")
    message = to_message(native, native._state.user)  # type: ignore[arg-type]
    assert message is not None and not message.mentions_bot
    assert (message.place.channel, message.place.thread) == (CHANNEL, THREAD)


def test_direct_message_with_attachment() -> None:
    native = _recorded("dm_attachment")
    message = to_message(native, native._state.user)  # type: ignore[arg-type]
    assert message is not None and message.place.kind is PlaceKind.DM
    assert [(a.name, a.size) for a in message.attachments] == [("notes.txt", 1432)]


def test_joins_and_pins_are_not_turns() -> None:
    native = _recorded("member_join")
    assert to_message(native, native._state.user) is None  # type: ignore[arg-type]


@pytest.mark.parametrize("plugins", [["moderation", "reminders"]])
async def test_private_notices_are_direct_messages_and_reminders_go_to_the_channel(
    running: Discord,
) -> None:
    server = running.server
    await server.dispatch("MESSAGE_CREATE", addressed(server, "huge spoiler here"))
    await running.settle(pushed=1)
    (notice,) = [c for c in server.calls if c.method == "POST" and c.path.endswith("/messages")]
    assert notice.path == f"/channels/{DM_CHANNEL}/messages" and "blocked" in notice.body["content"]
    assert any(c.path == "/users/@me/channels" for c in server.calls)  # the DM was opened
    await server.dispatch("MESSAGE_CREATE", addressed(server, "remind me in 1 second to stretch"))
    await server.wait(lambda: any("Reminder" in t for t in server.texts()), within=10)
    await running.settle(pushed=1)
    (reminder,) = [c for c in server.calls if "Reminder" in str(c.body.get("content"))]
    assert reminder.path == f"/channels/{CHANNEL}/messages"
