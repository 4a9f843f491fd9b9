"""The durable inbox: a message is kept before it is confirmed to its platform, and what
a stopped (or killed) bot left unanswered is answered when it starts again."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from core import testing
from core.bot import Bot
from core.channel import CollectingChannel
from core.storage.inbox import Shown, dump_message, load_message
from core.types import Attachment, Message

PLATFORM = testing.PLATFORM


def _numbered(text: str, number: int, **where: object) -> Message:
    return dataclasses.replace(testing.message(text, **where), id=str(number))  # type: ignore[arg-type]


class Channels:
    """The reply channels a restart gets, one per message, with the shown reply asked for."""

    def __init__(self) -> None:
        self.made: list[tuple[Message, Shown | None, CollectingChannel]] = []

    def __call__(self, message: Message, shown: Shown | None) -> CollectingChannel:
        channel = CollectingChannel()
        self.made.append((message, shown, channel))
        return channel

    def replies(self) -> list[str]:
        return [reply.text for _, _, channel in self.made for reply in channel.replies]


async def _states(data_dir: Path) -> list[str]:
    async with testing.open_bot(data_dir) as bot:
        return await _left(bot)


async def _left(bot: Bot) -> list[str]:
    return [str(row[0]) for row in await bot.store.rows("SELECT state FROM inbox ORDER BY id")]


async def count_rows(bot: Bot, table: str) -> int:
    row = await bot.store.row(f"SELECT COUNT(*) FROM {table}")
    return int(row[0]) if row else 0


def test_a_message_survives_its_json() -> None:
    message = dataclasses.replace(
        testing.message("héllo \U0001f600", channel="general", thread="t1", name="Ann"),
        id="77",
        reply_to="70",
        attachments=(Attachment("a.png", "image/png", 12, "https://x/a.png"),),
    )
    assert load_message(dump_message(message)) == message


async def test_an_answered_message_is_done_and_its_text_gone(tmp_path: Path) -> None:
    async with testing.open_bot(tmp_path) as bot:
        assert await testing.answer(bot, "hello") == "echo: hello"
        assert bot.inbox.journal.read() == ({}, {1})  # answered: on record at once
        await bot.idle()  # and marked done in the database a moment later
        assert bot.inbox.journal.read() == ({}, set())
        row = await bot.store.row("SELECT state, message, shown_text FROM inbox")
        assert row is not None and tuple(row) == ("done", None, None)
        # what is not to be answered is not written down at all
        said = testing.message("just chatting", channel="general", mentions_bot=False)
        await bot.handle(said, CollectingChannel())
        assert await count_rows(bot, "inbox") == 1


async def test_a_message_accepted_before_a_crash_is_answered_on_start(tmp_path: Path) -> None:
    async with testing.open_bot(tmp_path) as bot:
        # the process dies right after the platform was told the messages arrived
        await bot.inbox.accept(_numbered("first", 1))
        await bot.inbox.accept(_numbered("second", 2))
    assert await _states(tmp_path) == ["pending", "pending"]
    async with testing.open_bot(tmp_path) as bot:
        channels = Channels()
        assert await bot.resume(PLATFORM, channels) == 2
        # something new in the same conversation comes after them
        new = await testing.answer(bot, "third")
        assert channels.replies() == ["echo: first", "echo: second"] and new == "echo: third"
        kept = await testing.history(bot, testing.message(""))
        assert [t.text for t in kept] == [
            "first",
            "echo: first",
            "second",
            "echo: second",
            "third",
            "echo: third",
        ]
        assert await bot.resume(PLATFORM, channels) == 0  # nothing is answered twice
    assert await _states(tmp_path) == ["done", "done", "done"]


async def test_a_stored_reply_is_sent_not_made_again(tmp_path: Path) -> None:
    async with testing.open_bot(tmp_path) as bot:
        message = _numbered("how are you?", 5)
        entry = await bot.inbox.accept(message)
        assert entry is not None
        # the turn stored its reply and the process died before (or while) sending it
        async with bot.store.transaction():
            _, reply = await bot.store.record_exchange(bot.profile.name, message, "Fine, you?")
            await bot.inbox.stored(entry, reply)
        await bot.inbox.shown(entry, "m-9", "Fine,")
    async with testing.open_bot(tmp_path) as bot:
        channels = Channels()
        await bot.resume(PLATFORM, channels)
        await bot.idle()
        (resumed,) = channels.made
        assert resumed[1] == Shown("m-9", "Fine,")  # the reply shown half way, to finish
        assert channels.replies() == ["Fine, you?"]
        assert await count_rows(bot, "turns") == 2  # not stored twice


async def test_a_message_older_than_the_limit_is_told_the_bot_was_down(tmp_path: Path) -> None:
    async with testing.open_bot(tmp_path) as bot:
        await bot.inbox.accept(_numbered("are you there?", 3))
        async with bot.store.transaction() as db:
            await db.execute("UPDATE inbox SET received_at = received_at - 7200")
    async with testing.open_bot(tmp_path) as bot:
        channels = Channels()
        await bot.resume(PLATFORM, channels)
        await bot.idle()
        (reply,) = channels.replies()
        assert "offline when you sent this" in reply and "are you there?" in reply
        assert await count_rows(bot, "turns") == 0


async def test_a_message_delivered_again_after_a_restart_is_answered_once(
    tmp_path: Path,
) -> None:
    message = _numbered("only once", 42)
    async with testing.open_bot(tmp_path) as bot:
        assert (await bot.handle(message, CollectingChannel())).reply is not None
    async with testing.open_bot(tmp_path) as bot:
        again = CollectingChannel()
        result = await bot.handle(message, again)
        assert result.ended == "delivered twice" and not again.replies
        # the same id in another conversation is another message
        elsewhere = dataclasses.replace(message, place=testing.message("", user="bob").place)
        assert (await bot.handle(elsewhere, CollectingChannel())).reply is not None


async def test_forget_erases_the_inbox_too(tmp_path: Path) -> None:
    async with testing.open_bot(tmp_path) as bot:
        await testing.answer(bot, "hello")
        await bot.inbox.accept(_numbered("pending words", 8))
        await bot.inbox.accept(_numbered("bob's", 9, user="bob"))
        assert await testing.answer(bot, "/forget confirm")
        rows = await bot.store.rows("SELECT user_key FROM inbox")
        bob = bot.store.privacy.user_key(PLATFORM, "bob")
        assert [row[0] for row in rows] == [bob]


async def test_the_records_of_answered_messages_are_pruned(tmp_path: Path) -> None:
    async with testing.open_bot(tmp_path) as bot:
        await testing.answer(bot, "hello")
        await bot.inbox.accept(_numbered("still pending", 1))
        assert await bot.inbox.prune(older_than_s=3600) == 0
        async with bot.store.transaction() as db:
            await db.execute("UPDATE inbox SET updated_at = updated_at - 7200")
        assert await bot.inbox.prune(older_than_s=3600) == 1  # the done one only
        assert await _left(bot) == ["pending"]


async def test_a_shown_reply_is_on_record_at_once_and_a_torn_line_is_skipped(
    tmp_path: Path,
) -> None:
    async with testing.open_bot(tmp_path) as bot:
        entry = await bot.inbox.accept(_numbered("tell me a story", 4))
        assert entry is not None
        journal = bot.inbox.journal
        await bot.inbox.shown(entry, "m-1", "Once upon")
        assert journal.read() == ({entry: Shown("m-1", "Once upon")}, set())
        await bot.inbox.shown(entry, "m-1", "Once upon a time")
        with journal.path.open("a") as file:
            file.write('["shown", 99, "m-7", "a line cut sh')  # a crash mid-write
        assert journal.read() == ({entry: Shown("m-1", "Once upon a time")}, set())
        # the process dies here: the journal is all that knows the reply's message
    async with testing.open_bot(tmp_path) as bot:
        channels = Channels()
        await bot.resume(PLATFORM, channels)
        await bot.idle()
        assert channels.made[0][1] == Shown("m-1", "Once upon a time")
        assert bot.inbox.journal.read() == ({}, set())  # folded into the row, then emptied
