"""Users' control over their data: /privacy, /export, /forget, /optout, /optin, /why."""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Sequence
from pathlib import Path

from pydantic import SecretStr

from core import testing
from core.bot import Bot
from core.generation.fake import FakeGenerator
from core.people import rights
from core.settings import PROJECT_BOTS_DIR
from core.types import ChatMessage

SECRET = "zebra-lasagna-4242"


async def alice_and_bob(bot: Bot) -> None:
    await testing.say(bot, f"my name is Alice and I love {SECRET}", user="alice")
    await testing.say(bot, "I live in Lisbon", user="alice", channel="general")
    await testing.say(bot, "bob here, I love chess", user="bob")
    await testing.say(bot, "hi all", user="bob", channel="general")


async def test_export_holds_everything_of_mine_and_nothing_else(tmp_path: Path) -> None:
    async with testing.open_bot(tmp_path) as bot:
        await alice_and_bob(bot)
        data = json.loads(await testing.answer(bot, "/export", user="alice"))
    texts = [m["text"] for m in data["messages"]]
    assert f"my name is Alice and I love {SECRET}" in texts
    assert "I live in Lisbon" in texts
    assert any(t.startswith("echo: ") for t in texts)  # my replies are mine too
    assert not any("bob" in t or "chess" in t for t in texts)
    assert {m["text"] for m in data["memories"]} == {
        f"my name is Alice and I love {SECRET}",
        "I live in Lisbon",
    }
    assert {(f["key"], f["value"]) for f in data["profile"]} >= {
        ("name", "Alice"),
        ("likes", SECRET),
        ("home", "Lisbon"),
    }
    assert data["opted_out"] is False
    readings = data["emotion_readings"]  # one per message of mine, none of bob's
    assert [r["ekman"] for r in readings] == ["joy", "neutral"]
    assert readings[0]["labels"] == {"love": 0.9} and readings[0]["private"] is True
    dm = next(m for m in data["messages"] if SECRET in m["text"])
    assert dm["private"] is True and dm["channel"] == "(direct message)"


async def test_export_is_refused_in_a_group(tmp_path: Path) -> None:
    async with testing.open_bot(tmp_path) as bot:
        await alice_and_bob(bot)
        reply = await testing.answer(bot, "/export", user="alice", channel="general")
    assert SECRET not in reply and "direct message" in reply


def scan(folder: Path, needle: str) -> list[str]:
    """Database files that still contain ``needle`` anywhere in their bytes."""
    return [p.name for p in folder.glob("socialbot.db*") if needle.encode() in p.read_bytes()]


async def test_forget_leaves_nothing_behind(tmp_path: Path) -> None:
    async with testing.open_bot(tmp_path) as bot:
        await alice_and_bob(bot)
        warning = await testing.answer(bot, "/forget", user="alice")
        assert "/forget confirm" in warning
        assert scan(tmp_path, SECRET)  # nothing happened yet
        done = await testing.answer(bot, "/forget confirm", user="alice", channel="general")
        assert "erased everything" in done
        alice = bot.store.privacy.user_key("test", "alice")
        assert await rights.counts(bot.store, "test", alice) == {
            "turns": 0,
            "memories": 0,
            "facts": 0,
            "summaries": 0,
            "emotions": 0,
            "plugin_data": 0,
        }
        # bob keeps his data; alice's memories are gone from recall too
        bob = bot.store.privacy.user_key("test", "bob")
        assert (await rights.counts(bot.store, "test", bob))["turns"] == 4
        memory = await testing.answer(bot, "what do you remember about me?", user="alice")
        assert "don't remember anything" in memory
    assert scan(tmp_path, SECRET) == []
    assert scan(tmp_path, "Lisbon") == []
    with sqlite3.connect(tmp_path / "socialbot.db") as db:
        for table in ("turns", "memories", "facts", "summaries", "optouts", "emotions", "consents"):
            rows = db.execute(
                f"SELECT COUNT(*) FROM {table} WHERE user_key = ?", (alice,)
            ).fetchone()
            assert rows[0] == 0, table


async def test_optout_stores_nothing_but_still_answers(tmp_path: Path) -> None:
    async with testing.open_bot(tmp_path) as bot:
        await testing.say(bot, "before opting out", user="carol")
        assert "opted out" in await testing.answer(bot, "/optout", user="carol")
        reply = await testing.answer(bot, f"secret while out {SECRET}", user="carol")
        assert reply == f"echo: secret while out {SECRET}"
        assert "opted out" in await testing.answer(bot, "/privacy", user="carol")
        assert "opted in" in await testing.answer(bot, "/optin", user="carol")
        await testing.say(bot, "after opting in", user="carol")
        texts = [t.text for t in await testing.history(bot, testing.message("", user="carol"))]
    assert texts == [
        "before opting out",
        "echo: before opting out",
        "after opting in",
        "echo: after opting in",
    ]
    assert scan(tmp_path, SECRET) == []


async def test_privacy_report(tmp_path: Path) -> None:
    async with testing.open_bot(tmp_path) as bot:
        await alice_and_bob(bot)
        report = await testing.answer(bot, "/privacy", user="alice")
    assert "4 messages" in report and "2 memories" in report
    assert "365 days" in report and "keyed hash" in report and "not encrypted" in report


async def test_why_shows_the_memories_used(tmp_path: Path) -> None:
    async with testing.open_bot(tmp_path) as bot:
        assert "haven't answered" in await testing.answer(bot, "/why", user="dan")
        await testing.say(bot, "my dog is called Rex", user="dan")
        await testing.say(bot, "/reset", user="dan")
        await testing.say(bot, "what is my dog called?", user="dan")
        why = await testing.answer(bot, "/why", user="dan")
    assert 'My last answer to you here was: "echo: what is my dog called?"' in why
    assert '"my dog is called Rex"' in why and "0 earlier messages" in why


async def test_what_do_you_remember_is_answered_from_facts(tmp_path: Path) -> None:
    generator = FakeGenerator()
    async with testing.open_bot(tmp_path, generator=generator) as bot:
        await alice_and_bob(bot)
        in_dm = await testing.answer(bot, "What do you remember about me?", user="alice")
        in_group = await testing.answer(
            bot, "what do you know about me", user="alice", channel="general"
        )
    assert "Your name is Alice." in in_dm and f"You like {SECRET}." in in_dm
    assert "You live in Lisbon." in in_dm
    assert "You live in Lisbon." in in_group and SECRET not in in_group
    assert all("remember about me" not in m.content for p in generator.prompts for m in p)


async def test_encryption_at_rest(tmp_path: Path) -> None:
    from core.privacy import Cipher

    key = Cipher.new_key()
    settings = testing.settings_for(tmp_path, encryption_key=SecretStr(key))
    async with testing.open_bot(tmp_path, settings=settings) as bot:
        await testing.say(bot, f"my name is Eve and I love {SECRET}", user="eve", name="Eve Q")
        data = json.loads(await testing.answer(bot, "/export", user="eve"))
        assert any(SECRET in m["text"] for m in data["memories"])
    assert scan(tmp_path, SECRET) == [] and scan(tmp_path, "Eve Q") == []
    # the same data opened again with the key reads back
    async with testing.open_bot(tmp_path, settings=settings) as bot:
        turns = await testing.history(bot, testing.message("", user="eve"))
        assert SECRET in turns[0].text


async def test_personal_data_is_redacted_before_storage(tmp_path: Path) -> None:
    generator = FakeGenerator()
    async with testing.open_bot(tmp_path, generator=generator) as bot:
        await testing.say(bot, "write to me at eve@example.org", user="eve")
        # the local model still saw the message as written
        assert generator.prompts[-1][-1].content == "write to me at eve@example.org"
    assert scan(tmp_path, "eve@example.org") == []
    assert scan(tmp_path, "[email]")


async def test_retention_purges_old_data(tmp_path: Path) -> None:
    async with testing.open_bot(tmp_path) as bot:
        await testing.say(bot, "old news", user="fay")
        await testing.say(bot, "fresh news", user="fay")
        long_ago = time.time() - 400 * 86400
        await bot.store.db.execute("UPDATE turns SET created_at = ? WHERE id <= 2", (long_ago,))
        await bot.store.db.execute(
            "UPDATE memories SET created_at = ? WHERE turn_id = 1", (long_ago,)
        )
        deleted = await rights.purge_older_than(bot.store, bot.memory, 365)
        texts = [t.text for t in await testing.history(bot, testing.message("", user="fay"))]
    assert deleted > 0 and texts == ["fresh news", "echo: fresh news"]
    assert scan(tmp_path, "old news") == []


async def test_old_turns_fold_into_a_summary(tmp_path: Path) -> None:
    from core.settings import load_profile

    profile = load_profile(PROJECT_BOTS_DIR, "companion")
    small = profile.model_copy(
        update={
            "context": profile.context.model_copy(update={"budget_tokens": 200}),
            "memory": profile.memory.model_copy(update={"summarize_after": 4}),
        }
    )

    def script(messages: Sequence[ChatMessage]) -> str:
        if messages[0].content.startswith("Summarise"):
            return "Gus talked about his garden and tomatoes."
        return "ok"

    generator = FakeGenerator(script)
    async with testing.open_bot(tmp_path, profile=small, generator=generator) as bot:
        for i in range(12):
            await testing.say(
                bot, f"message number {i} about my garden " + "word " * 10, user="gus"
            )
            await bot.settle()  # the summary folds before the next turn
        await testing.say(bot, "and now?", user="gus")
        system = generator.prompts[-1][0].content
        data = json.loads(await testing.answer(bot, "/export", user="gus"))
    assert "Summary of the earlier conversation: Gus talked about his garden" in system
    assert data["summaries"] and data["summaries"][0]["private"] is True
    assert any(p[0].content.startswith("Summarise") for p in generator.prompts)
