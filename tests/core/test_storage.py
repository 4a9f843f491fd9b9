from __future__ import annotations

import sqlite3
from dataclasses import replace
from pathlib import Path

import pytest

from core.errors import ConfigError
from core.memory.summary import Summaries
from core.privacy import Privacy
from core.storage.store import MIGRATIONS, Store
from core.testing import message
from core.types import Role


async def open_store(path: Path, privacy: Privacy) -> Store:
    return await Store.open(path, privacy)


async def recent(
    store: Store,
    text_of: str = "",
    user: str = "alice",
    limit: int = 10,
    bot: str = "bot",
    channel: str | None = None,
) -> list[str]:
    sample = message(text_of, user=user, channel=channel)
    scope = store.privacy.scope(sample)
    return [t.text for t in await store.recent_turns(bot, sample.place, scope, limit=limit)]


async def test_new_database_is_wal_and_at_latest_schema(tmp_path: Path, privacy: Privacy) -> None:
    store = await open_store(tmp_path / "db" / "s.db", privacy)
    try:
        assert await store.schema_version() == len(MIGRATIONS)
    finally:
        await store.close()
    with sqlite3.connect(tmp_path / "db" / "s.db") as db:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


async def test_exchanges_survive_a_restart(tmp_path: Path, privacy: Privacy) -> None:
    hello = message("hello", user="alice")
    store = await open_store(tmp_path / "s.db", privacy)
    user_id, reply_id = await store.record_exchange("bot", hello, "hi alice", context=[7, 8])
    await store.close()

    store = await open_store(tmp_path / "s.db", privacy)
    try:
        scope = privacy.scope(hello)
        turns = await store.recent_turns("bot", hello.place, scope, limit=10)
        assert [(t.id, t.role, t.text) for t in turns] == [
            (user_id, Role.USER, "hello"),
            (reply_id, Role.ASSISTANT, "hi alice"),
        ]
        assert turns[1].context == (7, 8)
        assert (await store.turn(user_id, scope)) == turns[0]
    finally:
        await store.close()


async def test_user_ids_and_dm_channels_are_stored_hashed(tmp_path: Path, privacy: Privacy) -> None:
    store = await open_store(tmp_path / "s.db", privacy)
    await store.record_exchange("bot", message("hi", user="alice-12345"), "hello")
    await store.close()
    with sqlite3.connect(tmp_path / "s.db") as db:
        rows = db.execute("SELECT user_key, channel FROM turns").fetchall()
    assert all("alice-12345" not in value for row in rows for value in row)
    assert rows[0][0] == privacy.user_key("test", "alice-12345")


async def test_recent_turns_are_the_latest_oldest_first(tmp_path: Path, privacy: Privacy) -> None:
    store = await open_store(tmp_path / "s.db", privacy)
    for i in range(5):
        await store.record_exchange("bot", message(f"m{i}", user="alice"), f"r{i}")
    await store.record_exchange("other-bot", message("x", user="alice"), "not mine")
    await store.record_exchange("bot", message("elsewhere", user="bob"), "not here")
    assert await recent(store, limit=3) == ["r3", "m4", "r4"]
    await store.close()


async def test_a_failed_exchange_keeps_the_message_only(tmp_path: Path, privacy: Privacy) -> None:
    store = await open_store(tmp_path / "s.db", privacy)
    _, reply_id = await store.record_exchange("bot", message("anyone?"), None)
    assert reply_id is None
    assert await recent(store) == ["anyone?"]
    await store.close()


async def test_reset_hides_earlier_turns_but_keeps_them(tmp_path: Path, privacy: Privacy) -> None:
    store = await open_store(tmp_path / "s.db", privacy)
    first, _ = await store.record_exchange("bot", message("before"), "ok")
    await store.reset("bot", message("/reset"))
    await store.record_exchange("bot", message("after"), "ok2")
    assert await recent(store) == ["after", "ok2"]
    assert await store.turn(first, privacy.scope(message(""))) is not None
    await store.close()


async def test_migrates_an_old_database_forward(tmp_path: Path, privacy: Privacy) -> None:
    path = tmp_path / "s.db"
    sqlite3.connect(path).close()  # schema version 0: an empty file
    store = await open_store(path, privacy)
    assert await store.schema_version() == len(MIGRATIONS)
    await store.close()


async def test_turns_and_summaries_of_a_database_before_per_person_groups_are_kept(
    tmp_path: Path, privacy: Privacy
) -> None:
    path = tmp_path / "s.db"
    before = len(MIGRATIONS) - 1  # the migration that added `person`
    with sqlite3.connect(path) as db:
        for version, script in enumerate(MIGRATIONS[:before], 1):
            db.executescript(f"{script}\nPRAGMA user_version = {version};")
        where = ("bot", "test", "", "lounge", "", 0, "k")
        db.execute(
            "INSERT INTO turns (bot, platform, workspace, channel, thread, private, user_key,"
            " role, text, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, 'user', 'hi all', 1.0)",
            where,
        )
        db.execute(
            "INSERT INTO summaries (bot, platform, workspace, channel, thread, private,"
            " user_key, text, through_turn, updated_at) VALUES (?, ?, ?, ?, ?, ?, '',"
            " 'they said hi', 1, 1.0)",
            where[:6],
        )
    store = await open_store(path, privacy)
    try:
        assert await store.schema_version() == len(MIGRATIONS)
        assert await recent(store, channel="lounge") == ["hi all"]
        rows = await store.rows("SELECT text, person FROM summaries", ())
        assert [tuple(r) for r in rows] == [("they said hi", "")]
    finally:
        await store.close()


async def test_refuses_a_database_from_a_newer_version(tmp_path: Path, privacy: Privacy) -> None:
    path = tmp_path / "s.db"
    with sqlite3.connect(path) as db:
        db.execute(f"PRAGMA user_version = {len(MIGRATIONS) + 1}")
    with pytest.raises(ConfigError, match="newer than this socialbot"):
        await open_store(path, privacy)


async def test_exchange_is_atomic(tmp_path: Path, privacy: Privacy) -> None:
    store = await open_store(tmp_path / "s.db", privacy)
    with pytest.raises(TypeError):
        # a context that is not JSON-serialisable fails after the first insert
        await store.record_exchange("bot", message("hello"), "x", context=[object()])  # type: ignore[list-item]
    assert await recent(store) == []
    await store.close()


async def test_concurrent_writes_share_one_commit_and_fail_alone(
    tmp_path: Path, privacy: Privacy
) -> None:
    """Group commit: writers that overlap are committed together (one disk sync), each
    in its own savepoint, so one writer's error undoes only its own rows; all are
    durable (visible to another connection) once their ``async with`` has ended."""
    import asyncio

    store = await open_store(tmp_path / "db.sqlite", privacy)
    commits = 0

    def count(statement: str) -> None:
        nonlocal commits
        commits += statement == "COMMIT"

    await store.db._execute(store.db._conn.set_trace_callback, count)  # type: ignore[no-untyped-call]
    await store.db.execute("CREATE TABLE notes (text TEXT NOT NULL)")

    async def write(text: str | None) -> None:
        async with store.transaction() as db:
            await db.execute("INSERT INTO notes VALUES ('before')")
            await db.execute("INSERT INTO notes VALUES (?)", (text,))  # None: NOT NULL fails

    results = await asyncio.gather(
        *(write(None if n == 3 else f"note {n}") for n in range(8)), return_exceptions=True
    )
    assert [isinstance(r, sqlite3.IntegrityError) for r in results] == [n == 3 for n in range(8)]
    assert commits < 8  # fewer syncs than writers
    with sqlite3.connect(tmp_path / "db.sqlite") as other:  # durable: seen from outside
        rows = [r[0] for r in other.execute("SELECT text FROM notes")]
    assert sorted(rows) == sorted(["before"] * 7 + [f"note {n}" for n in range(8) if n != 3])
    await store.close()


async def test_a_transaction_nested_in_the_same_task_is_part_of_the_outer_one(
    tmp_path: Path, privacy: Privacy
) -> None:
    """A turn stores its message, reply, memory and emotion as one writer: an error
    after the exchange is written rolls the exchange back too, and caches hear of it."""
    store = await open_store(tmp_path / "s.db", privacy)
    rolled_back: list[str] = []
    store.on_rollback.append(lambda: rolled_back.append("yes"))
    with pytest.raises(RuntimeError, match="after the exchange"):
        async with store.transaction():
            await store.record_exchange("bot", message("hello"), "hi there")  # nested
            assert await recent(store) == ["hello", "hi there"]  # the writer sees its rows
            raise RuntimeError("after the exchange")
    assert await recent(store) == [] and rolled_back == ["yes"]
    async with store.transaction():
        await store.record_exchange("bot", message("hello again"), "hi")
    assert await recent(store) == ["hello again", "hi"] and rolled_back == ["yes"]
    await store.close()


async def test_each_member_of_a_group_kept_per_person_has_a_summary_of_their_own(
    tmp_path: Path, privacy: Privacy
) -> None:
    store = await open_store(tmp_path / "s.db", privacy)
    try:
        summaries = Summaries(store)
        shared = message("", user="alice", channel="lounge")
        alice = replace(shared, place=replace(shared.place, person="alice"))
        bob = message("", user="bob", channel="lounge")
        bob = replace(bob, place=replace(bob.place, person="bob"))
        scope = privacy.scope(shared)  # recall in the channel: the same for all three
        await summaries.save("bot", alice, "Alice talked about tea.", 2)
        await summaries.save("bot", bob, "Bob talked about coffee.", 4)
        await summaries.save("bot", shared, "The room talked.", 6)
        found = [await summaries.current("bot", m, scope) for m in (alice, bob, shared)]
        assert [s.text if s else None for s in found] == [
            "Alice talked about tea.",
            "Bob talked about coffee.",
            "The room talked.",
        ]
        await store.reset("bot", bob)  # /reset drops only bob's
        found = [await summaries.current("bot", m, scope) for m in (alice, bob, shared)]
        assert [s.text if s else None for s in found] == [
            "Alice talked about tea.",
            None,
            "The room talked.",
        ]
    finally:
        await store.close()
