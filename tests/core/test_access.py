"""Who the bot answers: allow and block lists from the settings, and admins' /block."""

from __future__ import annotations

import json
import sqlite3
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from core import testing
from core.bot import Bot
from core.channel import CollectingChannel
from core.errors import ConfigError
from core.people.access import NO_DMS, NOT_ALLOWED
from core.settings import Settings, load_settings


def settings(folder: Path, **access: Any) -> Settings:
    return testing.settings_for(folder, **access)


async def stored_turns(bot: Bot) -> int:
    row = await bot.store.row("SELECT COUNT(*) FROM turns")
    assert row is not None
    return int(row[0])


async def test_blocked_people_get_no_answer_and_nothing_of_theirs_is_kept(
    tmp_path: Path,
) -> None:
    eve_blocked = settings(tmp_path, block_users="test:eve")
    async with testing.open_bot(tmp_path, settings=eve_blocked) as bot:
        assert await testing.answer(bot, "hello", user="eve") == ""
        assert await testing.answer(bot, "hello", user="eve", channel="lounge") == ""
        result = await testing.say(bot, "hello", user="eve")
        assert result.ended == "not allowed: the speaker is blocked"
        assert await stored_turns(bot) == 0
        assert await testing.answer(bot, "hello", user="alice") == "echo: hello"
        assert (
            await testing.answer(bot, "hello", user="alice", channel="lounge")
            == "echo: Alice: hello"
        )


async def test_an_allow_list_answers_only_those_on_it_and_admins(tmp_path: Path) -> None:
    async with testing.open_bot(
        tmp_path, settings=settings(tmp_path, allow_users="test:alice,web:*"), admins=["root"]
    ) as bot:
        assert await testing.answer(bot, "hi", user="alice") == "echo: hi"
        assert await testing.answer(bot, "hi", user="root") == "echo: hi"
        assert await testing.answer(bot, "hi", user="anyone", platform="web") == "echo: hi"
        assert await testing.answer(bot, "hi", user="bob") == NOT_ALLOWED  # told why, in a DM
        assert (
            await testing.answer(bot, "hi", user="bob", channel="lounge") == ""
        )  # silent in groups
        assert await stored_turns(bot) == 6  # alice's, root's and the browser's; none of bob's


async def test_place_lists_match_a_channel_a_thread_or_a_workspace(tmp_path: Path) -> None:
    access = settings(tmp_path, allow_places="test:lounge,test:W1", block_places="test:T9")
    async with testing.open_bot(tmp_path, settings=access) as bot:
        assert await testing.answer(bot, "a", channel="lounge") == "echo: Alice: a"
        assert await testing.answer(bot, "b", channel="general") == ""
        assert await testing.answer(bot, "c", channel="general", workspace="W1") == "echo: Alice: c"
        assert await testing.answer(bot, "d", channel="lounge", thread="T9") == ""
        assert await testing.answer(bot, "e") == "echo: e"  # direct messages are not places


async def test_direct_messages_can_be_turned_off(tmp_path: Path) -> None:
    async with testing.open_bot(tmp_path, settings=settings(tmp_path, allow_dms=False)) as bot:
        assert await testing.answer(bot, "hi") == NO_DMS
        assert await testing.answer(bot, "hi", channel="lounge") == "echo: Alice: hi"


async def test_blocked_people_keep_their_data_rights(tmp_path: Path) -> None:
    async with testing.open_bot(tmp_path, admins=["root"]) as bot:
        await testing.answer(bot, "my favourite colour is teal", user="eve")
        assert (await testing.answer(bot, "/block test:eve", user="root") or "").startswith(
            "Blocked"
        )
        assert await testing.answer(bot, "/help", user="eve") == ""
        assert "admins have blocked you" in (
            await testing.answer(bot, "/privacy", user="eve") or ""
        )
        exported = json.loads(await testing.answer(bot, "/export", user="eve") or "")
        assert exported["blocked"] is True
        assert exported["messages"][0]["text"] == "my favourite colour is teal"
        assert "erased everything" in (
            await testing.answer(bot, "/forget confirm", user="eve") or ""
        )
        # erasure takes their data, not the moderators' record: still blocked
        assert await testing.answer(bot, "hello again", user="eve") == ""
        exported = json.loads(await testing.answer(bot, "/export", user="eve") or "")
        assert exported["blocked"] is True and exported["messages"] == []


async def test_admins_block_and_unblock_and_it_outlives_a_restart(tmp_path: Path) -> None:
    async with testing.open_bot(tmp_path, admins=["root"]) as bot:
        assert (await testing.answer(bot, "/block eve", user="bob") or "").startswith(
            "Only an admin"
        )
        assert (await testing.answer(bot, "/block eve", user="root")) == (
            "Blocked test:eve: I won't answer them or keep anything they say. "
            "/unblock test:eve to undo."
        )
        assert (
            await testing.answer(bot, "/block test:eve", user="root")
            == "test:eve is already blocked."
        )
        assert "admins cannot be blocked" in (
            await testing.answer(bot, "/block root", user="root") or ""
        )
        assert "by name" in (await testing.answer(bot, "/block @eve", user="root") or "")
        assert "Usage: /block WHO" in (await testing.answer(bot, "/block", user="root") or "")
        assert "with /block" in (await testing.answer(bot, "/access", user="root") or "")
        assert await testing.answer(bot, "hi", user="eve") == ""
    rows = sqlite3.connect(tmp_path / "socialbot.db").execute("SELECT * FROM blocks").fetchall()
    assert len(rows) == 1 and "eve" not in repr(rows)  # a keyed hash, like every user id
    async with testing.open_bot(tmp_path, admins=["root"]) as bot:
        assert await testing.answer(bot, "hi", user="eve") == ""
        assert await testing.answer(bot, "/unblock <@!eve>", user="root") == "Unblocked test:eve."
        assert await testing.answer(bot, "hi", user="eve") == "echo: hi"
        assert await testing.answer(bot, "/unblock eve", user="root") == "test:eve is not blocked."


async def test_admins_block_by_replying_to_a_message(tmp_path: Path) -> None:
    async with testing.open_bot(tmp_path, admins=["root"]) as bot:
        said = testing.message("/block", user="root", channel="lounge")
        result = await bot.handle(replace(said, reply_to_user="eve"), CollectingChannel())
        assert result.reply is not None and result.reply.text.startswith("Blocked test:eve")
        assert await testing.answer(bot, "hi", user="eve", channel="lounge") == ""
        usage = await testing.answer(bot, "/unblock", user="root", channel="lounge") or ""
        assert usage.endswith("or reply to their message with /unblock")


async def test_a_block_in_the_settings_is_lifted_there_only(tmp_path: Path) -> None:
    async with testing.open_bot(
        tmp_path, settings=settings(tmp_path, block_users="test:eve"), admins=["root"]
    ) as bot:
        assert "SOCIALBOT_BLOCK_USERS" in (
            await testing.answer(bot, "/unblock eve", user="root") or ""
        )
        assert await testing.answer(bot, "hi", user="eve") == ""
        described = await testing.answer(bot, "/access", user="root") or ""
        assert "blocked: 1 person in the settings, 0 with /block" in described


@pytest.mark.parametrize(
    "name", ["SOCIALBOT_BLOCK_USERS", "SOCIALBOT_ALLOW_PLACES", "SOCIALBOT_ADMINS"]
)
def test_a_malformed_list_is_a_clear_config_error(
    name: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.chdir(tmp_path)  # no stray .env
    monkeypatch.setenv(name, "discord:1, 80351110224678912")
    with pytest.raises(ConfigError) as error:
        load_settings()
    message = str(error.value)
    assert message.startswith(f"invalid setting {name}:")
    assert "'80351110224678912' is not platform:id" in message
