"""Durable storage on SQLite (aiosqlite): WAL mode, a schema version, forward migrations.

One :class:`Store` owns one connection; aiosqlite runs it on its own thread, so
calls from many conversations are serialised there and never block the loop.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import aiosqlite

from core.errors import ConfigError
from core.types import ConversationKey, Message, Role

log = logging.getLogger(__name__)

# Each entry moves the schema one version forward. Never edit a released entry:
# append a new one. ``PRAGMA user_version`` records how many have been applied.
MIGRATIONS: tuple[str, ...] = (
    """
    CREATE TABLE turns (
        id            INTEGER PRIMARY KEY,
        bot           TEXT    NOT NULL,
        platform      TEXT    NOT NULL,
        workspace     TEXT    NOT NULL DEFAULT '',
        channel       TEXT    NOT NULL,
        thread        TEXT    NOT NULL DEFAULT '',
        place_kind    TEXT    NOT NULL CHECK (place_kind IN ('dm', 'group')),
        user_id       TEXT    NOT NULL,
        display_name  TEXT    NOT NULL DEFAULT '',
        role          TEXT    NOT NULL CHECK (role IN ('user', 'assistant', 'reset')),
        text          TEXT    NOT NULL,
        native_id     TEXT    NOT NULL DEFAULT '',
        answers       INTEGER REFERENCES turns (id) ON DELETE CASCADE,
        context       TEXT,
        created_at    REAL    NOT NULL
    );
    CREATE INDEX turns_by_conversation
        ON turns (bot, platform, workspace, channel, thread, id);
    CREATE INDEX turns_by_user ON turns (platform, user_id);
    """,
)


@dataclass(frozen=True, slots=True)
class StoredTurn:
    id: int
    role: Role
    user_id: str
    display_name: str
    text: str
    created_at: float
    context: tuple[int, ...] = ()


class Store:
    """The project's database. Open with :meth:`open`, close with :meth:`close`."""

    def __init__(self, db: aiosqlite.Connection, path: Path) -> None:
        self._db = db
        self.path = path

    @classmethod
    async def open(cls, path: Path, *, synchronous: str = "FULL") -> Store:
        path.parent.mkdir(parents=True, exist_ok=True)
        db = await aiosqlite.connect(path, isolation_level=None)
        try:
            await db.execute("PRAGMA journal_mode=WAL")
            await db.execute(f"PRAGMA synchronous={'FULL' if synchronous == 'FULL' else 'NORMAL'}")
            await db.execute("PRAGMA foreign_keys=ON")
            await db.execute("PRAGMA busy_timeout=5000")
            store = cls(db, path)
            await store._migrate()
        except BaseException:
            await db.close()
            raise
        return store

    async def close(self) -> None:
        await self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        await self._db.close()

    async def schema_version(self) -> int:
        async with self._db.execute("PRAGMA user_version") as cursor:
            row = await cursor.fetchone()
        return int(row[0]) if row else 0

    async def _migrate(self) -> None:
        current = await self.schema_version()
        latest = len(MIGRATIONS)
        if current > latest:
            raise ConfigError(
                f"database {self.path} has schema version {current}, newer than this "
                f"socialbot understands ({latest}); upgrade socialbot"
            )
        for version in range(current + 1, latest + 1):
            log.info("migrating %s to schema version %d", self.path, version)
            script = MIGRATIONS[version - 1]
            await self._db.executescript(
                f"BEGIN IMMEDIATE;\n{script}\nPRAGMA user_version = {version};\nCOMMIT;"
            )

    async def record_exchange(
        self,
        bot: str,
        message: Message,
        reply: str | None,
        *,
        context: Sequence[int] = (),
    ) -> tuple[int, int | None]:
        """Store a user's message and the bot's reply to it in one transaction.

        Returns the new turn ids. ``reply`` is None when no real answer was made
        (the user's message is still kept); ``context`` is the ids of the stored
        turns that the reply was generated from.
        """
        place, speaker = message.place, message.speaker
        where = (
            bot,
            place.platform,
            place.workspace,
            place.channel,
            place.thread,
            place.kind.value,
        )
        now = time.time()
        await self._db.execute("BEGIN IMMEDIATE")
        try:
            cursor = await self._db.execute(
                "INSERT INTO turns (bot, platform, workspace, channel, thread, place_kind,"
                " user_id, display_name, role, text, native_id, created_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, 'user', ?, ?, ?)",
                (
                    *where,
                    speaker.user_id,
                    speaker.display_name,
                    message.text,
                    message.id,
                    message.time.timestamp(),
                ),
            )
            user_turn = cursor.lastrowid
            reply_turn = None
            if reply is not None:
                cursor = await self._db.execute(
                    "INSERT INTO turns (bot, platform, workspace, channel, thread, place_kind,"
                    " user_id, display_name, role, text, answers, context, created_at)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, 'assistant', ?, ?, ?, ?)",
                    (*where, bot, bot, reply, user_turn, json.dumps(list(context)), now),
                )
                reply_turn = cursor.lastrowid
            await self._db.execute("COMMIT")
        except BaseException:
            await self._db.execute("ROLLBACK")
            raise
        assert user_turn is not None
        return user_turn, reply_turn

    async def recent_turns(
        self, bot: str, conversation: ConversationKey, *, limit: int
    ) -> list[StoredTurn]:
        """The last ``limit`` turns of one conversation since its last reset, oldest first."""
        where = "bot = ? AND platform = ? AND workspace = ? AND channel = ? AND thread = ?"
        key = (
            bot,
            conversation.platform,
            conversation.workspace,
            conversation.channel,
            conversation.thread,
        )
        async with self._db.execute(
            f"SELECT {_COLUMNS} FROM turns WHERE {where} AND role != 'reset'"
            f" AND id > (SELECT COALESCE(MAX(id), 0) FROM turns WHERE {where} AND role = 'reset')"
            " ORDER BY id DESC LIMIT ?",
            (*key, *key, limit),
        ) as cursor:
            rows = await cursor.fetchall()
        return [_turn(row) for row in reversed(list(rows))]

    async def reset(self, bot: str, message: Message) -> int:
        """Start the conversation afresh: earlier turns stay stored but leave the context."""
        place = message.place
        cursor = await self._db.execute(
            "INSERT INTO turns (bot, platform, workspace, channel, thread, place_kind,"
            " user_id, display_name, role, text, native_id, created_at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, 'reset', '', ?, ?)",
            (
                bot,
                place.platform,
                place.workspace,
                place.channel,
                place.thread,
                place.kind.value,
                message.speaker.user_id,
                message.speaker.display_name,
                message.id,
                time.time(),
            ),
        )
        assert cursor.lastrowid is not None
        return cursor.lastrowid

    async def turn(self, turn_id: int) -> StoredTurn | None:
        async with self._db.execute(
            f"SELECT {_COLUMNS} FROM turns WHERE id = ? AND role != 'reset'",
            (turn_id,),
        ) as cursor:
            row = await cursor.fetchone()
        return _turn(row) if row else None


_COLUMNS = "id, role, user_id, display_name, text, created_at, context"


def _turn(row: sqlite3.Row) -> StoredTurn:
    turn_id, role, user_id, name, text, created, context = row
    return StoredTurn(
        id=turn_id,
        role=Role(role),
        user_id=user_id,
        display_name=name,
        text=text,
        created_at=created,
        context=tuple(json.loads(context)) if context else (),
    )
