"""Durable storage on SQLite (aiosqlite): WAL mode, a schema version, forward migrations.

One :class:`Store` owns one connection; aiosqlite runs it on its own thread, so
calls from many conversations are serialised there and never block the loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import sqlite3
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import aiosqlite

from core.errors import ConfigError
from core.privacy import Privacy, Scope
from core.types import Message, Place, Role

log = logging.getLogger(__name__)

# Each entry moves the schema one version forward. Never edit a released entry:
# append a new one. ``PRAGMA user_version`` records how many have been applied.
MIGRATIONS: tuple[str, ...] = (
    """
    -- Every row that holds something a person said carries where it was said
    -- (platform, workspace, channel, thread, private) and whose it is (user_key,
    -- a keyed hash of the user id); reads select rows with core.privacy.Scope.
    CREATE TABLE turns (
        id            INTEGER PRIMARY KEY,
        bot           TEXT    NOT NULL,
        platform      TEXT    NOT NULL,
        workspace     TEXT    NOT NULL DEFAULT '',
        channel       TEXT    NOT NULL,
        thread        TEXT    NOT NULL DEFAULT '',
        private       INTEGER NOT NULL CHECK (private IN (0, 1)),
        user_key      TEXT    NOT NULL,  -- the speaker, or for a reply the user answered
        display_name  TEXT    NOT NULL DEFAULT '',
        role          TEXT    NOT NULL CHECK (role IN ('user', 'assistant', 'reset')),
        text          TEXT    NOT NULL,
        native_id     TEXT    NOT NULL DEFAULT '',
        answers       INTEGER REFERENCES turns (id) ON DELETE CASCADE,
        context       TEXT,              -- JSON: ids of the turns in the reply's window
        recalled      TEXT,              -- JSON: ids of the memories placed in the prompt
        summary       INTEGER,           -- the summary placed in the prompt
        created_at    REAL    NOT NULL
    );
    CREATE INDEX turns_by_conversation ON turns (bot, platform, workspace, channel, thread, id);
    CREATE INDEX turns_by_user ON turns (platform, user_key);
    CREATE INDEX turns_by_time ON turns (created_at);

    CREATE TABLE memories (
        id          INTEGER PRIMARY KEY,
        turn_id     INTEGER REFERENCES turns (id) ON DELETE CASCADE,
        kind        TEXT    NOT NULL CHECK (kind IN ('message', 'fact')),
        platform    TEXT    NOT NULL,
        workspace   TEXT    NOT NULL DEFAULT '',
        channel     TEXT    NOT NULL,
        thread      TEXT    NOT NULL DEFAULT '',
        private     INTEGER NOT NULL CHECK (private IN (0, 1)),
        user_key    TEXT    NOT NULL,
        text        TEXT    NOT NULL,
        embedding   BLOB    NOT NULL,    -- float32, unit length
        created_at  REAL    NOT NULL
    );
    CREATE INDEX memories_by_user ON memories (platform, user_key);
    CREATE INDEX memories_by_channel ON memories (platform, workspace, channel, private);
    CREATE INDEX memories_by_time ON memories (created_at);

    CREATE TABLE facts (
        id          INTEGER PRIMARY KEY,
        turn_id     INTEGER REFERENCES turns (id) ON DELETE CASCADE,
        platform    TEXT    NOT NULL,
        workspace   TEXT    NOT NULL DEFAULT '',
        channel     TEXT    NOT NULL,
        thread      TEXT    NOT NULL DEFAULT '',
        private     INTEGER NOT NULL CHECK (private IN (0, 1)),
        user_key    TEXT    NOT NULL,
        key         TEXT    NOT NULL,
        value       TEXT    NOT NULL,
        created_at  REAL    NOT NULL
    );
    CREATE INDEX facts_by_user ON facts (platform, user_key);

    -- One rolling summary per conversation, of the turns up to `through_turn`.
    CREATE TABLE summaries (
        id            INTEGER PRIMARY KEY,
        bot           TEXT    NOT NULL,
        platform      TEXT    NOT NULL,
        workspace     TEXT    NOT NULL DEFAULT '',
        channel       TEXT    NOT NULL,
        thread        TEXT    NOT NULL DEFAULT '',
        private       INTEGER NOT NULL CHECK (private IN (0, 1)),
        user_key      TEXT    NOT NULL DEFAULT '',  -- the DM's user; '' in a group
        text          TEXT    NOT NULL,
        through_turn  INTEGER NOT NULL,
        updated_at    REAL    NOT NULL,
        UNIQUE (bot, platform, workspace, channel, thread)
    );

    CREATE TABLE optouts (
        platform    TEXT NOT NULL,
        user_key    TEXT NOT NULL,
        created_at  REAL NOT NULL,
        PRIMARY KEY (platform, user_key)
    );
    """,
    """
    -- The emotion read from each user message, kept in the speaker's scope like the message.
    CREATE TABLE emotions (
        id          INTEGER PRIMARY KEY,
        turn_id     INTEGER REFERENCES turns (id) ON DELETE CASCADE,
        platform    TEXT    NOT NULL,
        workspace   TEXT    NOT NULL DEFAULT '',
        channel     TEXT    NOT NULL,
        thread      TEXT    NOT NULL DEFAULT '',
        private     INTEGER NOT NULL CHECK (private IN (0, 1)),
        user_key    TEXT    NOT NULL,
        ekman       TEXT    NOT NULL,
        labels      TEXT    NOT NULL,  -- JSON: the predicted labels with their probabilities
        valence     REAL    NOT NULL,
        arousal     REAL    NOT NULL,
        created_at  REAL    NOT NULL
    );
    CREATE INDEX emotions_by_user ON emotions (platform, user_key, id);
    CREATE INDEX emotions_by_time ON emotions (created_at);
    """,
    """
    -- Plugins' own data (core.plugins.storage): scoped like everything else. A row with
    -- a user_key is that person's (covered by /export and /forget); user_key = '' is a
    -- group place's own setting. value is JSON, encrypted when a key is set.
    CREATE TABLE plugin_data (
        id          INTEGER PRIMARY KEY,
        plugin      TEXT    NOT NULL,
        key         TEXT    NOT NULL,
        platform    TEXT    NOT NULL,
        workspace   TEXT    NOT NULL,
        channel     TEXT    NOT NULL,
        thread      TEXT    NOT NULL,
        private     INTEGER NOT NULL CHECK (private IN (0, 1)),
        user_key    TEXT    NOT NULL,
        value       TEXT    NOT NULL,
        due_at      REAL,
        created_at  REAL    NOT NULL,
        updated_at  REAL    NOT NULL,
        UNIQUE (plugin, key, platform, workspace, channel, thread, private, user_key)
    );
    CREATE INDEX plugin_data_by_user ON plugin_data (platform, user_key);
    CREATE INDEX plugin_data_due ON plugin_data (plugin, due_at) WHERE due_at IS NOT NULL;
    -- Plugins an admin enabled or disabled at run time, per bot (over the profile's list).
    CREATE TABLE plugin_state (
        bot         TEXT    NOT NULL,
        plugin      TEXT    NOT NULL,
        enabled     INTEGER NOT NULL CHECK (enabled IN (0, 1)),
        PRIMARY KEY (bot, plugin)
    );
    """,
    """
    -- What a person explicitly agreed to, beyond being answered and remembered. Only
    -- 'training': their messages (and the bot's replies to them) may be exported to
    -- fine-tune the chat model. Absent means no; /optout and /forget delete the row.
    CREATE TABLE consents (
        platform    TEXT NOT NULL,
        user_key    TEXT NOT NULL,
        purpose     TEXT NOT NULL CHECK (purpose IN ('training')),
        created_at  REAL NOT NULL,
        PRIMARY KEY (platform, user_key, purpose)
    );
    """,
    """
    -- People an admin blocked at run time (/block): not answered, nothing of theirs kept.
    -- Not erased by /forget: it is the operator's moderation record, not the person's data.
    CREATE TABLE blocks (
        platform    TEXT NOT NULL,
        user_key    TEXT NOT NULL,
        created_at  REAL NOT NULL,
        PRIMARY KEY (platform, user_key)
    );
    """,
    """
    -- A group whose profile keeps a conversation per person ([groups] context = "person"):
    -- each member's turns, resets and summary are their own. `person` is the member's
    -- keyed hash there, '' everywhere else (a DM, or a group shared by everyone).
    ALTER TABLE turns ADD COLUMN person TEXT NOT NULL DEFAULT '';
    DROP INDEX turns_by_conversation;
    CREATE INDEX turns_by_conversation
        ON turns (bot, platform, workspace, channel, thread, person, id);
    CREATE TABLE summaries_by_person (
        id            INTEGER PRIMARY KEY,
        bot           TEXT    NOT NULL,
        platform      TEXT    NOT NULL,
        workspace     TEXT    NOT NULL DEFAULT '',
        channel       TEXT    NOT NULL,
        thread        TEXT    NOT NULL DEFAULT '',
        person        TEXT    NOT NULL DEFAULT '',
        private       INTEGER NOT NULL CHECK (private IN (0, 1)),
        user_key      TEXT    NOT NULL DEFAULT '',
        text          TEXT    NOT NULL,
        through_turn  INTEGER NOT NULL,
        updated_at    REAL    NOT NULL,
        UNIQUE (bot, platform, workspace, channel, thread, person)
    );
    INSERT INTO summaries_by_person (id, bot, platform, workspace, channel, thread, private,
        user_key, text, through_turn, updated_at)
        SELECT id, bot, platform, workspace, channel, thread, private, user_key, text,
            through_turn, updated_at FROM summaries;
    DROP TABLE summaries;
    ALTER TABLE summaries_by_person RENAME TO summaries;
    """,
    """
    -- The durable inbox (core.storage.inbox): each message to be answered is written here
    -- before its platform is told it was received, and finished once answered. It is the
    -- work queue: on start, what is not finished is answered, in order per conversation.
    CREATE TABLE inbox (
        id            INTEGER PRIMARY KEY,
        bot           TEXT    NOT NULL,
        platform      TEXT    NOT NULL,
        event         TEXT,              -- keyed hash of the platform's message id; NULL: none
        conversation  TEXT    NOT NULL,  -- keyed hash of the conversation (order within it)
        user_key      TEXT    NOT NULL,
        state         TEXT    NOT NULL CHECK (state IN ('pending', 'stored', 'done')),
        message       TEXT,              -- the message as JSON, sealed; NULL once done
        shown_id      TEXT    NOT NULL DEFAULT '',  -- the platform's id of the reply shown
        shown_text    TEXT,              -- sealed: what that reply shows so far
        reply_turn    INTEGER REFERENCES turns (id) ON DELETE SET NULL,
        worker        TEXT    NOT NULL DEFAULT '',  -- the process that holds it
        lease_until   REAL,              -- until when (scale-out: then another may take it)
        received_at   REAL    NOT NULL,
        updated_at    REAL    NOT NULL,
        UNIQUE (bot, platform, event)
    );
    CREATE INDEX inbox_open ON inbox (bot, platform, id) WHERE state != 'done';
    CREATE INDEX inbox_by_user ON inbox (platform, user_key);
    CREATE INDEX inbox_done ON inbox (updated_at) WHERE state = 'done';
    -- Per channel, the last message accepted there: where a platform without redelivery
    -- (Discord) catches up from its history after the bot was away.
    CREATE TABLE cursors (
        bot         TEXT    NOT NULL,
        platform    TEXT    NOT NULL,
        place       TEXT    NOT NULL,  -- keyed hash of workspace, channel and thread
        channel     TEXT    NOT NULL,  -- sealed: the id to read (the thread's, if any)
        user_key    TEXT    NOT NULL,  -- a DM's person ('' in a group): /forget erases it
        last_id     TEXT    NOT NULL,
        seen_at     REAL    NOT NULL,
        PRIMARY KEY (bot, platform, place)
    );
    CREATE INDEX cursors_by_user ON cursors (platform, user_key);
    """,
)


@dataclass(frozen=True, slots=True)
class StoredTurn:
    id: int
    role: Role
    user_key: str
    display_name: str
    text: str
    created_at: float
    context: tuple[int, ...] = ()
    recalled: tuple[int, ...] = ()
    summary: int | None = None
    """For a reply: the version of the summary in its prompt (the last turn it covered)."""
    answers: int | None = None
    """For a reply: the user turn it answered."""


class Store:
    """The project's database. Open with :meth:`open`, close with :meth:`close`.

    Text written through it is redacted and sealed (encrypted, when a key is set)
    by its :class:`~core.privacy.Privacy`; user ids are stored as keyed hashes.
    """

    def __init__(self, db: aiosqlite.Connection, path: Path, privacy: Privacy) -> None:
        self.db = db
        self.path = path
        self.privacy = privacy
        self._writing = asyncio.Lock()
        self._writer: asyncio.Task[object] | None = None  # the task inside transaction()
        self._batch: asyncio.Future[None] | None = None
        self._committer: asyncio.Task[None] | None = None  # held so it is not collected
        self.on_rollback: list[Callable[[], None]] = []
        """Called when written rows are rolled back (caches of them must forget them)."""

    @classmethod
    async def open(cls, path: Path, privacy: Privacy, *, synchronous: str = "FULL") -> Store:
        path.parent.mkdir(parents=True, exist_ok=True)
        db = await aiosqlite.connect(path, isolation_level=None)
        try:
            await db.execute_fetchall("PRAGMA journal_mode=WAL")
            await db.execute(f"PRAGMA synchronous={'FULL' if synchronous == 'FULL' else 'NORMAL'}")
            await db.execute("PRAGMA foreign_keys=ON")
            await db.execute("PRAGMA secure_delete=ON")  # erased text is overwritten, not left
            await db.execute("PRAGMA busy_timeout=5000")
            store = cls(db, path, privacy)
            await store._migrate()
        except BaseException:
            await db.close()
            raise
        return store

    async def close(self) -> None:
        await self.flush()
        try:
            await self.db.execute_fetchall("PRAGMA wal_checkpoint(TRUNCATE)")
        except sqlite3.OperationalError as error:  # the WAL is checkpointed at next open
            log.warning("could not checkpoint %s on close: %s", self.path, error)
        await self.db.close()

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[aiosqlite.Connection]:
        """A write transaction, durable (committed) when the ``async with`` ends.

        Group commit: writers that arrive while one is working join the same database
        transaction, each in a savepoint of its own (an error rolls back only that
        writer's changes), and one COMMIT (one disk sync) then makes them all durable
        at once. Under load this turns a sync per write into a sync per batch; alone,
        a write is committed as before, straight after it.

        Nested in the same task, a transaction is part of the enclosing one: everything
        a turn stores (its message, reply, memory, emotion and facts) is one writer,
        kept or rolled back as a whole.
        """
        task = asyncio.current_task()
        if task is not None and task is self._writer:
            yield self.db
            return
        async with self._writing:
            if self._batch is None:
                await self.db.execute("BEGIN IMMEDIATE")
                self._batch = asyncio.get_running_loop().create_future()
                self._committer = asyncio.create_task(self._commit_batch())
            batch = self._batch
            await self.db.execute("SAVEPOINT writer")
            self._writer = task
            try:
                yield self.db
            except BaseException:
                await self.db.execute("ROLLBACK TO writer")
                await self.db.execute("RELEASE writer")
                self._rolled_back()
                raise
            finally:
                self._writer = None
            await self.db.execute("RELEASE writer")
        await asyncio.shield(batch)

    async def rows(self, sql: str, params: Sequence[object] = ()) -> list[sqlite3.Row]:
        """Every row a query gives, in one trip to the database's thread."""
        return list(await self.db.execute_fetchall(sql, params))

    async def row(self, sql: str, params: Sequence[object] = ()) -> sqlite3.Row | None:
        """The first row of a query that gives at most a few (add ``LIMIT 1`` otherwise)."""
        rows = await self.rows(sql, params)
        return rows[0] if rows else None

    async def _commit_batch(self) -> None:
        """Commit the open batch once the writers queued behind the lock have joined it."""
        await asyncio.sleep(0)
        async with self._writing:
            await self._end_batch()

    async def _end_batch(self) -> None:
        """Commit the open batch, if any (the write lock is held)."""
        batch, self._batch = self._batch, None
        if batch is None:
            return
        try:
            await self.db.execute("COMMIT")
        except BaseException as error:
            with contextlib.suppress(sqlite3.Error):
                await self.db.execute("ROLLBACK")
            self._rolled_back()
            batch.set_exception(error)
            if not isinstance(error, Exception):
                raise
        else:
            batch.set_result(None)

    def _rolled_back(self) -> None:
        for forget in self.on_rollback:
            forget()

    async def flush(self) -> None:
        """Commit the batch being written, if any, now."""
        async with self._writing:
            await self._end_batch()

    async def compact(self) -> None:
        """Rewrite the database so deleted text survives in neither the file nor the WAL."""
        async with self._writing:
            await self._end_batch()
            await self.db.execute_fetchall("PRAGMA wal_checkpoint(TRUNCATE)")
            await self.db.execute("VACUUM")
            await self.db.execute_fetchall("PRAGMA wal_checkpoint(TRUNCATE)")

    async def schema_version(self) -> int:
        row = await self.row("PRAGMA user_version")
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
            await self.db.executescript(
                f"BEGIN IMMEDIATE;\n{script}\nPRAGMA user_version = {version};\nCOMMIT;"
            )

    def seal(self, text: str) -> str:
        """Text as it is written: redacted (if configured), then encrypted (if configured)."""
        return self.privacy.cipher.seal(self.privacy.for_storage(text))

    def where_said(self, message: Message) -> tuple[object, ...]:
        """``platform, workspace, channel, thread, private, user_key`` of a message's row."""
        stored = self.privacy.place(message.place)
        user_key = self.privacy.user_key(stored.platform, message.speaker.user_id)
        return (
            stored.platform,
            stored.workspace,
            stored.channel,
            stored.thread,
            int(stored.private),
            user_key,
        )

    def _place_values(self, bot: str, message: Message) -> tuple[object, ...]:
        """The values of ``_PLACE_COLUMNS`` for a turn row of ``message``."""
        return (bot, *self.where_said(message), self.privacy.place(message.place).person)

    async def record_exchange(
        self,
        bot: str,
        message: Message,
        reply: str | None,
        *,
        context: Sequence[int] = (),
        recalled: Sequence[int] = (),
        summary: int | None = None,
    ) -> tuple[int, int | None]:
        """Store a user's message and the bot's reply to it in one transaction.

        Returns the new turn ids. ``reply`` is None when no real answer was made
        (the user's message is still kept); ``context`` and ``recalled`` are what
        the reply was generated from.
        """
        where = self._place_values(bot, message)
        name = self.privacy.cipher.seal(message.speaker.display_name)
        async with self.transaction() as db:
            cursor = await db.execute(
                f"INSERT INTO turns ({_PLACE_COLUMNS}, display_name, role, text, native_id,"
                " created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 'user', ?, ?, ?)",
                (*where, name, self.seal(message.text), message.id, message.time.timestamp()),
            )
            user_turn = cursor.lastrowid
            assert user_turn is not None
            reply_turn = None
            if reply is not None:
                cursor = await db.execute(
                    f"INSERT INTO turns ({_PLACE_COLUMNS}, display_name, role, text, answers,"
                    " context, recalled, summary, created_at)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 'assistant', ?, ?, ?, ?, ?, ?)",
                    (
                        *where,
                        bot,
                        self.seal(reply),
                        user_turn,
                        json.dumps(list(context)),
                        json.dumps(list(recalled)),
                        summary,
                        time.time(),
                    ),
                )
                reply_turn = cursor.lastrowid
        return user_turn, reply_turn

    def conversation_where(self, bot: str, place: Place) -> tuple[str, tuple[object, ...]]:
        """The SQL condition selecting one conversation's rows (turns, summaries)."""
        stored = self.privacy.place(place)
        return (
            "bot = ? AND platform = ? AND workspace = ? AND channel = ? AND thread = ?"
            " AND person = ?",
            (bot, stored.platform, stored.workspace, stored.channel, stored.thread, stored.person),
        )

    async def recent_turns(
        self, bot: str, place: Place, scope: Scope, *, limit: int
    ) -> list[StoredTurn]:
        """The last ``limit`` turns in ``place`` since its last reset, oldest first."""
        rows = await self._turns(bot, place, scope, "", (), "DESC", limit)
        return list(reversed(rows))

    async def window_turns(
        self, bot: str, place: Place, scope: Scope, *, limit: int
    ) -> list[StoredTurn]:
        """What the next reply's window can draw on, oldest first: the turns since the
        start of the last reply's window (the window only ever moves forward), or the
        last ``limit`` turns while no reply has one. A long conversation reads a window's
        worth of rows per turn, not ``limit``."""
        where, key = self.conversation_where(bot, place)
        in_scope, allowed = scope.where()
        anchor = (
            " AND id >= COALESCE((SELECT json_extract(context, '$[0]') FROM turns"
            f" WHERE {where} AND {in_scope} AND role = 'assistant'"
            " AND json_array_length(context) > 0 ORDER BY id DESC LIMIT 1), 0)"
        )
        rows = await self._turns(bot, place, scope, anchor, (*key, *allowed), "DESC", limit)
        return list(reversed(rows))

    async def turns_between(
        self, bot: str, place: Place, scope: Scope, *, after: int, before: int, limit: int
    ) -> list[StoredTurn]:
        """Up to ``limit`` turns in ``place`` with ``after < id < before``, oldest first."""
        return await self._turns(
            bot, place, scope, " AND id > ? AND id < ?", (after, before), "ASC", limit
        )

    async def _turns(
        self,
        bot: str,
        place: Place,
        scope: Scope,
        extra: str,
        extra_params: tuple[object, ...],
        order: str,
        limit: int,
    ) -> list[StoredTurn]:
        where, key = self.conversation_where(bot, place)
        in_scope, allowed = scope.where()
        rows = await self.rows(
            f"SELECT {_COLUMNS} FROM turns WHERE {where} AND {in_scope} AND role != 'reset'"
            f" AND id > (SELECT COALESCE(MAX(id), 0) FROM turns WHERE {where} AND role = 'reset')"
            f"{extra} ORDER BY id {order} LIMIT ?",
            (*key, *allowed, *key, *extra_params, limit),
        )
        return [self._turn(row) for row in rows]

    async def reset(self, bot: str, message: Message) -> int:
        """Start the conversation afresh: earlier turns stay stored but leave the context."""
        async with self.transaction() as db:
            cursor = await db.execute(
                f"INSERT INTO turns ({_PLACE_COLUMNS}, role, text, native_id, created_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, 'reset', '', ?, ?)",
                (*self._place_values(bot, message), message.id, time.time()),
            )
            where, key = self.conversation_where(bot, message.place)
            await db.execute(f"DELETE FROM summaries WHERE {where}", key)
        assert cursor.lastrowid is not None
        return cursor.lastrowid

    async def turn(self, turn_id: int, scope: Scope) -> StoredTurn | None:
        in_scope, allowed = scope.where()
        row = await self.row(
            f"SELECT {_COLUMNS} FROM turns WHERE id = ? AND role != 'reset' AND {in_scope}",
            (turn_id, *allowed),
        )
        return self._turn(row) if row else None

    async def last_answer(
        self, bot: str, place: Place, scope: Scope, user_key: str
    ) -> StoredTurn | None:
        """The bot's latest reply to ``user_key`` in ``place``."""
        where, key = self.conversation_where(bot, place)
        in_scope, allowed = scope.where()
        row = await self.row(
            f"SELECT {_COLUMNS} FROM turns WHERE {where} AND {in_scope} AND role = 'assistant'"
            " AND user_key = ? ORDER BY id DESC LIMIT 1",
            (*key, *allowed, user_key),
        )
        return self._turn(row) if row else None

    def _turn(self, row: sqlite3.Row) -> StoredTurn:
        turn_id, role, user_key, name, text, created, context, recalled, summary, answers = row
        open_ = self.privacy.cipher.open
        return StoredTurn(
            id=turn_id,
            role=_ROLES[role],
            user_key=user_key,
            display_name=open_(name),
            text=open_(text),
            created_at=created,
            context=_ids(context) if context else (),
            recalled=_ids(recalled) if recalled else (),
            summary=summary,
            answers=answers,
        )


_ROLES = {role.value: role for role in Role}


@functools.lru_cache(maxsize=8192)
def _ids(text: str) -> tuple[int, ...]:
    """A JSON list of turn or memory ids. Every turn reads the same recent rows again,
    so their lists repeat: cached, they are parsed once, not once per turn."""
    return tuple(json.loads(text))


_PLACE_COLUMNS = "bot, platform, workspace, channel, thread, private, user_key, person"
_COLUMNS = "id, role, user_key, display_name, text, created_at, context, recalled, summary, answers"
