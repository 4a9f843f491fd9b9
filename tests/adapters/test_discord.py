"""The Discord adapter end to end: the real discord.py client (its HTTP, rate-limit and
gateway code), a fake REST API and gateway on 127.0.0.1, and the real core with the
fake generator."""

from __future__ import annotations

import json
import logging
import shlex
from dataclasses import replace
from pathlib import Path
from typing import Any, Literal, TypeAlias

import discord
import pytest
from pydantic import SecretStr

from adapters.discord_adapter import (
    COMMAND_NAME,
    DiscordAdapter,
    application_commands,
    command_text,
    intents,
    to_message,
)
from core import testing
from core.commands import Command, CommandTable, Param, Permission, Rest, command
from core.errors import ConfigError
from core.settings import Settings
from core.types import Message, PlaceKind
from tests.adapters.conftest import Platform, Running, platform_harness
from tests.adapters.fake_discord import (
    APP_ID,
    AUTOCOMPLETE,
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
    return testing.settings_for(
        tmp_path / "data",
        discord_bot_token=SecretStr(TOKEN),
        discord_api_base_url=server.api,
        discord_gateway_url=server.gateway,
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


# --- slash commands ---------------------------------------------------------------------
async def test_the_slash_commands_registered_are_the_command_table(running: Discord) -> None:
    server = running.server
    registered = await server.wait_registered()
    by_name = {c["name"]: c for c in registered}
    table = running.bot.commands
    assert len(by_name) == len(registered)  # no name twice
    assert set(by_name) == {c.name for c in table if COMMAND_NAME.match(c.name)} != set()
    assert len(registered) == len(table)  # every name of the table is one Discord takes
    assert len(server.registered()) == 1  # one bulk overwrite
    await running.adapter.registration_done()
    assert running.adapter.registered == [c["name"] for c in registered]

    help_ = by_name["help"]
    assert help_["description"] == "what I can do, or how to use one command"
    assert help_["options"] == [
        {
            "type": 3,  # STRING
            "name": "command",
            "description": "command",
            "required": False,
            "autocomplete": True,
        }
    ]
    consent = {o["name"]: o for o in by_name["consent"]["options"]}
    assert list(consent) == ["purpose", "choice"]  # the handler's order
    assert consent["choice"]["choices"] == [
        {"name": "on", "value": "on"},
        {"name": "off", "value": "off"},
    ]
    assert "choices" not in consent["purpose"] and "autocomplete" not in consent["purpose"]
    assert by_name["status"]["default_member_permissions"] == "0"  # admin: hidden
    assert by_name["help"]["default_member_permissions"] is None  # everyone
    assert by_name["forget"]["default_member_permissions"] is None  # a data right: everyone
    admins = {c.name for c in table if c.permission is Permission.ADMIN}
    assert {n for n, c in by_name.items() if c["default_member_permissions"] == "0"} == admins
    assert all(c["dm_permission"] is True and c["type"] == 1 for c in registered)
    assert all(0 < len(c["description"]) <= 100 for c in registered)


@pytest.mark.parametrize("running", [{"admins": f"discord:{user(2)['id']}"}], indirect=True)
async def test_slash_commands_follow_plugins_enabled_and_disabled(running: Discord) -> None:
    server = running.server
    first = {c["name"] for c in await server.wait_registered()}
    assert "remind" not in first and "help" in first  # the control: reminders is off
    admin_dm: dict[str, Any] = {"channel": DM_CHANNEL, "guild": False, "author": user(2)}
    enable = server.message("/plugin enable reminders", **admin_dm)
    await server.dispatch("MESSAGE_CREATE", enable)
    await server.wait(lambda: len(server.registered()) == 2)
    assert {c["name"] for c in server.registered()[-1]} == first | {"remind", "reminders"}
    await server.dispatch("MESSAGE_CREATE", server.message("/plugin disable reminders", **admin_dm))
    await server.wait(lambda: len(server.registered()) == 3)
    assert {c["name"] for c in server.registered()[-1]} == first
    await running.settle(pushed=2)
    assert server.texts() == ["Enabled reminders.", "Disabled reminders."]


@pytest.mark.parametrize(
    "platform",
    [Platform(lambda: FakeDiscord(refuse_commands=True), discord_settings, quick_adapter)],
)
async def test_a_refused_registration_is_logged_and_typed_commands_still_work(
    running: Discord, caplog: pytest.LogCaptureFixture
) -> None:
    server = running.server
    await running.adapter.registration_done()
    assert len(server.registered()) == 0 and any(  # tried, refused
        c.path == f"/applications/{APP_ID}/commands" for c in server.calls
    )
    assert running.adapter.registered == []
    assert any("could not register the slash commands" in r.message for r in caplog.records)
    await server.dispatch(
        "MESSAGE_CREATE", server.message("/privacy", channel=DM_CHANNEL, guild=False)
    )
    await running.settle(pushed=1)
    assert server.texts()[0].startswith("What I keep about you")


def _table() -> CommandTable:
    async def tune(ctx: Any, level: int, ratio: float = 1.5, loud: bool = False) -> str:
        """set the volume"""
        return ""

    async def pick(ctx: Any, size: Literal[1, 2, 3], flag: Literal[True, False] = True) -> str:
        return ""

    async def odd(ctx: Any, first: str = "", second: str = "") -> str:
        return ""

    async def say(ctx: Any, who: str, words: Rest) -> str:
        return ""

    table = CommandTable()
    table.add(command(tune, owner="core"))
    table.add(command(pick, owner="core", help="pick a size", permission=Permission.ADMIN))
    table.add(command(say, owner="core", help="say " + "so " * 60))
    table.add(command(odd, owner="core", help="odd"))
    table.add(command(odd, name="find", owner="core", suggest=lambda p: ["x"] * (p == "first")))
    table.add(command(odd, name="x.y", owner="core"))  # not a Discord name
    table.add(command(odd, name="a" * 33, owner="core"))  # too long for Discord
    return table


def test_each_argument_type_becomes_its_option_type(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        registered = {c["name"]: c for c in application_commands(_table())}
    assert sorted(registered) == ["find", "odd", "pick", "say", "tune"]  # not x.y, a*33
    assert sum("cannot be a slash command" in r.message for r in caplog.records) == 2
    tune = registered["tune"]
    assert tune["description"] == "set the volume"
    assert [(o["name"], o["type"], o["required"]) for o in tune["options"]] == [
        ("level", 4, True),
        ("ratio", 10, False),
        ("loud", 5, False),
    ]
    pick = registered["pick"]
    assert pick["default_member_permissions"] == "0"
    size, flag = pick["options"]
    assert size["type"] == 4 and size["choices"] == [
        {"name": str(n), "value": n} for n in (1, 2, 3)
    ]
    assert flag["type"] == 5 and "choices" not in flag  # Discord refuses choices on BOOLEAN
    say = registered["say"]
    assert len(say["description"]) == 100 and say["description"].endswith("…")
    assert [(o["type"], o["required"]) for o in say["options"]] == [(3, True), (3, True)]
    autocompleted = [
        (c["name"], o["name"])
        for c in registered.values()
        for o in c["options"]
        if "autocomplete" in o
    ]
    assert autocompleted == [("find", "first"), ("find", "second")]  # its own suggestions


def test_an_optional_argument_before_a_required_one_makes_all_optional() -> None:
    async def handler(ctx: Any, **values: Any) -> str:
        return ""

    maybe, needed = Param("maybe", str, ""), Param("needed", str)
    table = CommandTable()  # a signature cannot put them so; a table can
    table.add(Command("late", handler, "late", (maybe, needed), owner="core"))
    table.add(Command("early", handler, "early", (needed, maybe), owner="core"))
    registered = {c["name"]: c for c in application_commands(table)}
    assert [o["required"] for o in registered["late"]["options"]] == [False, False]
    assert [o["required"] for o in registered["early"]["options"]] == [True, False]  # control


def test_a_slash_command_reads_as_the_command_typed() -> None:
    table = _table()

    def text(name: str, **options: Any) -> str:
        return command_text(table, name, [{"name": k, "value": v} for k, v in options.items()])

    assert text("tune", level=3) == "/tune 3"
    assert text("tune", level=3, loud=True) == "/tune 3 1.5 yes"  # the gap gets its default
    assert text("odd", second="b c") == "/odd '' 'b c'"
    assert shlex.split(text("odd", first="it's", second="x")) == ["/odd", "it's", "x"]
    assert text("say", who="Ann Lee", words="hello there, it's me") == (
        "/say 'Ann Lee' hello there, it's me"  # the rest of the line as typed
    )
    assert text("gone", a="b c") == "/gone 'b c'"  # not in the table: the core says so
    parsed = table.get("tune").parse(text("tune", level=3, loud=True)[len("/tune") :])  # type: ignore[union-attr]
    assert parsed == {"level": 3, "ratio": 1.5, "loud": True}


async def test_a_slash_command_is_deferred_privately_and_answered_as_typed(
    running: Discord,
) -> None:
    server = running.server
    await server.dispatch("MESSAGE_CREATE", server.message("/help"))
    await running.settle(pushed=1)
    (typed,) = server.texts()
    assert typed.startswith("I'm ")

    slash = server.interaction("help")
    await server.dispatch("INTERACTION_CREATE", slash)
    await running.settle(pushed=1)
    assert server.callbacks(slash) == [{"type": 5, "data": {"flags": 64}}]  # deferred, ephemeral
    assert server.answers(slash) == [typed]  # the deferred response, edited
    assert server.texts() == [typed]  # nothing said in the channel for everyone
    edits = [c for c in server.calls if c.path.endswith("/messages/@original")]
    assert [c.method for c in edits] == ["PATCH"]
    assert edits[0].body["allowed_mentions"]["parse"] == []

    in_dm = server.interaction("help", {"command": "privacy"}, channel=DM_CHANNEL, guild=False)
    await server.dispatch("INTERACTION_CREATE", in_dm)
    await running.settle(pushed=1)
    assert server.callbacks(in_dm) == [{"type": 5}]  # not ephemeral: a DM is private already
    (answer,) = server.answers(in_dm)
    assert answer.startswith("/privacy\n")


def _recording(adapter: DiscordAdapter) -> list[Message]:
    """The messages the adapter hands the bot from now on."""
    seen: list[Message] = []
    deliver = adapter.deliver

    async def recording(message: Message | None, channel: Any, **then: Any) -> bool:
        if message is not None:
            seen.append(message)
        return await deliver(message, channel, **then)

    adapter.deliver = recording  # type: ignore[method-assign]
    return seen


async def test_a_slash_command_is_a_message_from_its_user_in_its_place(running: Discord) -> None:
    server = running.server
    seen = _recording(running.adapter)
    places = {"thread": THREAD, "channel": CHANNEL, "dm": DM_CHANNEL}
    sent = {
        where: server.interaction(
            "help", {"command": "why"}, channel=channel, guild=where != "dm", author=user(3)
        )
        for where, channel in places.items()
    }
    for data in sent.values():
        await server.dispatch("INTERACTION_CREATE", data)
    await running.settle(pushed=3)
    thread, channel, dm = seen
    assert all(m.text == "/help why" and m.mentions_bot for m in seen)
    assert [m.id for m in seen] == [d["id"] for d in sent.values()]
    assert {(m.speaker.user_id, m.speaker.display_name) for m in seen} == {
        (user(3)["id"], "User 3")
    }
    assert (thread.place.channel, thread.place.thread, thread.place.workspace) == (
        CHANNEL,
        THREAD,
        GUILD,
    )
    assert (channel.place.channel, channel.place.thread, channel.place.kind) == (
        CHANNEL,
        "",
        PlaceKind.GROUP,
    )
    assert (dm.place.channel, dm.place.workspace, dm.place.kind) == (DM_CHANNEL, "", PlaceKind.DM)
    assert all(server.answers(d)[0].startswith("/why\n") for d in sent.values())


@pytest.mark.parametrize("running", [{"block_users": f"discord:{user(1)['id']}"}], indirect=True)
async def test_a_data_right_is_answered_to_someone_blocked_and_nothing_else_is(
    running: Discord,
) -> None:
    server = running.server
    forget = server.interaction("forget")  # no option: asks to confirm
    await server.dispatch("INTERACTION_CREATE", forget)
    await running.settle(pushed=1)
    (answer,) = server.answers(forget)
    assert answer.startswith("This erases everything I keep about you")
    assert not server.deleted_original(forget)

    help_ = server.interaction("help")
    await server.dispatch("INTERACTION_CREATE", help_)
    await server.wait(lambda: server.deleted_original(help_))  # no endless "thinking"
    await running.settle(pushed=1)
    assert server.callbacks(help_) == [{"type": 5, "data": {"flags": 64}}]
    assert server.answers(help_) == []  # not answered


LONG = "\n\n".join(f"paragraph {i}:" + " words" * 150 for i in range(5))


async def test_a_long_answer_is_the_original_response_and_follow_ups(running: Discord) -> None:
    async def long(ctx: Any) -> str:
        return LONG

    running.bot.commands.add(command(long, owner="core", help="a long answer"))
    server = running.server
    slash = server.interaction("long")
    await server.dispatch("INTERACTION_CREATE", slash)
    await running.settle(pushed=1)
    parts = server.answers(slash)
    assert len(parts) >= 3 and all(len(p) <= 2000 for p in parts)
    assert "\n\n".join(parts) == LONG.strip()
    follow_ups = [c for c in server.calls if c.method == "POST" and c.path.startswith("/webhooks/")]
    assert len(follow_ups) == len(parts) - 1
    assert all(c.body["flags"] == 64 for c in follow_ups)  # private, as the first part
    assert not any(c.body.get("refused") for c in server.calls)


async def test_autocompletion_offers_the_tables_suggestions(running: Discord) -> None:
    server = running.server
    typing_ = server.interaction("help", {"command": "pri"}, kind=AUTOCOMPLETE, focused="command")
    await server.dispatch("INTERACTION_CREATE", typing_)
    await server.wait(lambda: bool(server.callbacks(typing_)))
    await running.settle(pushed=1)
    (callback,) = server.callbacks(typing_)
    assert callback["type"] == 8  # APPLICATION_COMMAND_AUTOCOMPLETE_RESULT
    choices = callback["data"]["choices"]
    assert choices[0] == {"name": "privacy", "value": "privacy"}
    assert [c["value"] for c in choices] == running.bot.commands.suggestions(
        "help", "command", "pri"
    )

    nothing_typed = server.interaction(
        "help", {"command": ""}, kind=AUTOCOMPLETE, focused="command"
    )
    await server.dispatch("INTERACTION_CREATE", nothing_typed)
    await server.wait(lambda: bool(server.callbacks(nothing_typed)))
    await running.settle(pushed=1)
    offered = [c["value"] for c in server.callbacks(nothing_typed)[0]["data"]["choices"]]
    assert "help" in offered and "privacy" in offered and len(offered) <= 25
    assert "status" not in offered  # admin commands are not offered
    assert server.texts() == []  # autocompletion is not a turn


async def test_a_redelivered_interaction_is_answered_once(running: Discord) -> None:
    server = running.server
    slash = server.interaction("privacy")
    await server.dispatch("INTERACTION_CREATE", slash)
    await server.dispatch("INTERACTION_CREATE", slash)
    await running.settle(pushed=2)
    assert len(server.callbacks(slash)) == 1
    (answer,) = server.answers(slash)
    assert answer.startswith("What I keep about you")
    again = server.interaction("privacy")  # control: a new interaction is answered
    await server.dispatch("INTERACTION_CREATE", again)
    await running.settle(pushed=1)
    assert server.answers(again) == [answer]


async def test_a_malformed_interaction_is_dropped_and_the_adapter_goes_on(
    running: Discord, caplog: pytest.LogCaptureFixture
) -> None:
    server = running.server
    no_data = server.interaction("help")
    del no_data["data"]
    no_token = server.interaction("help")  # discord.py itself cannot read this one
    del no_token["token"]
    no_focus = server.interaction("help", {"command": "x"}, kind=AUTOCOMPLETE)
    for broken in (no_data, no_token, no_focus):
        await server.dispatch("INTERACTION_CREATE", broken)
    await running.settle(pushed=3)
    assert not any(c.path.startswith(("/interactions/", "/webhooks/")) for c in server.calls)
    dropped = [r for r in caplog.records if "dropped" in r.message]
    assert len(dropped) == 3

    await server.dispatch(
        "MESSAGE_CREATE", server.message("still there?", channel=DM_CHANNEL, guild=False)
    )
    fine = server.interaction("help", {"command": "forget"})
    await server.dispatch("INTERACTION_CREATE", fine)
    await running.settle(pushed=2)
    assert server.texts() == ["echo: still there?"]
    assert server.answers(fine)[0].startswith("/forget [confirm]")
    assert len(server.identifies) == 1 and server.resumes == 0  # the same connection


async def test_what_was_missed_while_away_is_answered_on_reconnecting(
    tmp_path: Path, server: FakeDiscord, platform: Platform[DiscordAdapter, FakeDiscord]
) -> None:
    settings = discord_settings(tmp_path, server)
    async with platform_harness(platform, server, settings) as before:
        answered = server.message("hello there", channel=DM_CHANNEL, guild=False)
        await server.dispatch("MESSAGE_CREATE", answered)
        await before.settle(pushed=1)
    # Discord keeps no queue: what the person wrote while the bot was away is only in the
    # channel's history (with what was answered before, and the bot's own reply)
    missed = [
        server.message(text, channel=DM_CHANNEL, guild=False)
        for text in ("are you there?", "hello?")
    ]
    own = server.message("echo: hello there", author=BOT_USER, channel=DM_CHANNEL, guild=False)
    server.history[DM_CHANNEL] = [answered, own, *missed]
    async with platform_harness(platform, server, settings) as after:
        await server.wait(lambda: len(server.texts()) >= 3)
        await after.bot.settle()
        assert server.texts() == ["echo: hello there", "echo: are you there?", "echo: hello?"]
        reads = [c for c in server.calls if c.method == "GET" and c.path.endswith("/messages")]
        assert [c.path for c in reads] == [f"/channels/{DM_CHANNEL}/messages"]  # once, the DM
