from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from adapters.console import make_message
from core.errors import ConfigError
from core.storage import MIGRATIONS, Store
from core.types import Role


async def test_new_database_is_wal_and_at_latest_schema(tmp_path: Path) -> None:
    store = await Store.open(tmp_path / "db" / "s.db")
    try:
        assert await store.schema_version() == len(MIGRATIONS)
    finally:
        await store.close()
    with sqlite3.connect(tmp_path / "db" / "s.db") as db:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


async def test_exchanges_survive_a_restart(tmp_path: Path) -> None:
    message = make_message("hello", user="alice")
    store = await Store.open(tmp_path / "s.db")
    user_id, reply_id = await store.record_exchange("bot", message, "hi alice", context=[7, 8])
    await store.close()

    store = await Store.open(tmp_path / "s.db")
    try:
        turns = await store.recent_turns("bot", message.place.conversation, limit=10)
        assert [(t.id, t.role, t.text) for t in turns] == [
            (user_id, Role.USER, "hello"),
            (reply_id, Role.ASSISTANT, "hi alice"),
        ]
        assert turns[1].context == (7, 8)
        assert (await store.turn(user_id)) == turns[0]
    finally:
        await store.close()


async def test_recent_turns_are_the_latest_oldest_first(tmp_path: Path) -> None:
    store = await Store.open(tmp_path / "s.db")
    message = make_message("x", user="alice")
    for i in range(5):
        await store.record_exchange("bot", make_message(f"m{i}", user="alice"), f"r{i}")
    await store.record_exchange("other-bot", message, "not mine")
    await store.record_exchange("bot", make_message("elsewhere", user="bob"), "not here")
    turns = await store.recent_turns("bot", message.place.conversation, limit=3)
    assert [t.text for t in turns] == ["r3", "m4", "r4"]
    await store.close()


async def test_a_failed_exchange_keeps_the_message_only(tmp_path: Path) -> None:
    store = await Store.open(tmp_path / "s.db")
    message = make_message("anyone?", user="alice")
    user_id, reply_id = await store.record_exchange("bot", message, None)
    assert reply_id is None
    turns = await store.recent_turns("bot", message.place.conversation, limit=3)
    assert [t.id for t in turns] == [user_id]
    await store.close()


async def test_reset_hides_earlier_turns_but_keeps_them(tmp_path: Path) -> None:
    store = await Store.open(tmp_path / "s.db")
    message = make_message("before", user="alice")
    first, _ = await store.record_exchange("bot", message, "ok")
    await store.reset("bot", message)
    await store.record_exchange("bot", make_message("after", user="alice"), "ok2")
    turns = await store.recent_turns("bot", message.place.conversation, limit=10)
    assert [t.text for t in turns] == ["after", "ok2"]
    assert await store.turn(first) is not None
    await store.close()


async def test_migrates_an_old_database_forward(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    sqlite3.connect(path).close()  # schema version 0: an empty file
    store = await Store.open(path)
    assert await store.schema_version() == len(MIGRATIONS)
    await store.close()


async def test_refuses_a_database_from_a_newer_version(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    with sqlite3.connect(path) as db:
        db.execute(f"PRAGMA user_version = {len(MIGRATIONS) + 1}")
    with pytest.raises(ConfigError, match="newer than this socialbot"):
        await Store.open(path)


async def test_exchange_is_atomic(tmp_path: Path) -> None:
    store = await Store.open(tmp_path / "s.db")
    message = make_message("hello", user="alice")
    with pytest.raises(TypeError):
        # a context that is not JSON-serialisable fails after the first insert
        await store.record_exchange("bot", message, "x", context=[object()])  # type: ignore[list-item]
    assert await store.recent_turns("bot", message.place.conversation, limit=5) == []
    await store.close()
