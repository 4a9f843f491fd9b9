"""`socialbot export training`: only people who agreed, with their personal data removed."""

from __future__ import annotations

import json
from pathlib import Path

from core import testing
from core.bot import Bot
from core.cli import main
from core.people import rights
from core.training.chat.data import read_conversations
from core.training.chat.export import export_training, scrub


async def conversation(bot: Bot, user: str, words: str) -> None:
    await testing.say(bot, f"{words} in private", user=user)
    await testing.say(bot, f"{words} in the group", user=user, channel="general")


async def test_only_consenting_people_are_exported(tmp_path: Path) -> None:
    out = tmp_path / "training.jsonl"
    async with testing.open_bot(tmp_path) as bot:
        assert "not used to fine-tune" in await testing.answer(bot, "/privacy", user="ann")
        assert "off unless you turn it on" in await testing.answer(bot, "/consent", user="ann")
        for user in ("ann", "cat", "dan", "eve"):
            assert "Thank you" in await testing.answer(bot, "/consent training", user=user)
        assert "you agreed" in await testing.answer(bot, "/privacy", user="ann")
        for user in ("ann", "bob", "cat", "dan", "eve"):
            await conversation(bot, user, f"{user}-words")
        await testing.say(bot, "write to ann@example.org or +44 20 7946 0958", user="ann")
        await testing.say(bot, "<@U123ABC> and @bobby, see https://example.org/x", user="ann")
        # cat withdraws, dan opts out, eve erases everything; bob never agreed.
        assert "Withdrawn" in await testing.answer(bot, "/consent training off", user="cat")
        await testing.answer(bot, "/optout", user="dan")
        await testing.answer(bot, "/optin", user="dan")  # opting in again does not restore consent
        await testing.answer(bot, "/forget confirm", user="eve")
        assert (
            await rights.consents(bot.store, "test", bot.store.privacy.user_key("test", "eve"))
            == []
        )
        summary = await export_training(bot.store, bot.profile.name, bot.profile.persona, out)
        ann_key = bot.store.privacy.user_key("test", "ann")
    raw = out.read_text()
    for other in ("bob", "cat", "dan", "eve"):
        assert f"{other}-words" not in raw
    assert "ann-words in private" in raw and "ann-words in the group" in raw
    assert "echo: ann-words in private" in raw  # the bot's replies to her
    for secret in (
        "ann@example.org",
        "7946",
        "U123ABC",
        "bobby",
        "example.org/x",
        ann_key,
        '"ann"',
    ):
        assert secret not in raw
    assert "[email]" in raw and "[phone number]" in raw and "@someone" in raw and "[link]" in raw
    assert summary.people == 1 and summary.conversations == 2  # her DM and the group
    records = [json.loads(line) for line in raw.splitlines()]
    assert all(r["messages"][0]["role"] == "system" for r in records)
    assert {r["speakers"][0] for r in records} == {records[0]["speakers"][0]}  # one pseudonym
    # The file is what `socialbot train chat` reads.
    assert len(read_conversations(out)) == 2


async def test_nobody_agreed_means_an_empty_export(tmp_path: Path) -> None:
    out = tmp_path / "training.jsonl"
    async with testing.open_bot(tmp_path) as bot:
        await conversation(bot, "bob", "hello")
        summary = await export_training(bot.store, bot.profile.name, bot.profile.persona, out)
    assert summary.conversations == 0 and out.read_text() == ""


async def test_a_reset_or_a_long_pause_starts_a_new_conversation(tmp_path: Path) -> None:
    out = tmp_path / "training.jsonl"
    async with testing.open_bot(tmp_path) as bot:
        await testing.answer(bot, "/consent training", user="ann")
        await testing.say(bot, "yesterday's topic", user="ann")
        async with bot.store.transaction() as db:  # a day passes
            await db.execute("UPDATE turns SET created_at = created_at - 86400")
        await testing.say(bot, "first topic", user="ann")
        await testing.say(bot, "more of it", user="ann")
        await testing.answer(bot, "/reset", user="ann")
        await testing.say(bot, "second topic", user="ann")
        summary = await export_training(bot.store, bot.profile.name, bot.profile.persona, out)
    contents = [
        [m["content"] for m in json.loads(line)["messages"][1:]]
        for line in out.read_text().splitlines()
    ]
    assert summary.conversations == 3
    assert contents == [
        ["yesterday's topic", "echo: yesterday's topic"],
        ["first topic", "echo: first topic", "more of it", "echo: more of it"],
        ["second topic", "echo: second topic"],
    ]


def test_scrub() -> None:
    assert scrub("mail me: a.b@c.io, call 555-123-4567") == "mail me: [email], call [phone number]"
    assert scrub("hey <@!1234> and <#C01|general>") == "hey @someone and @someone"
    assert scrub("2024-05-01 at 10:30, 3 cats") == "2024-05-01 at 10:30, 3 cats"


def test_export_command(tmp_path: Path, capsys: object) -> None:
    out = tmp_path / "out.jsonl"
    code = main(["export", "training", "--out", str(out), "--data-dir", str(tmp_path / "d")])
    assert code == 0 and out.read_text() == ""
