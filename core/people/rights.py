"""A person's control over their data: see it, export it, erase it, opt out.

Everything a person owns is selected by their *own* scope (the DM scope: their
user key on that platform), the same rule that recall uses.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Protocol

from core.memory.longterm import LongTermMemory
from core.privacy import Scope
from core.storage.store import Store
from core.types import Message

if TYPE_CHECKING:
    from core.emotion.history import EmotionHistory, StoredReading
    from core.memory.facts import Profiles, StoredFact
    from core.people.access import Access
    from core.settings import BotProfile

log = logging.getLogger(__name__)

FORMAT_VERSION = 1


def owner_scope(platform: str, user_key: str) -> Scope:
    return Scope(platform, True, user_key=user_key)


def _when(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, UTC).isoformat(timespec="seconds")


async def export(store: Store, platform: str, user_key: str) -> dict[str, Any]:
    """Everything kept about one person, as plain data."""
    where, params = owner_scope(platform, user_key).where()
    open_ = store.privacy.cipher.open

    async def rows(sql: str) -> list[Any]:
        return await store.rows(sql.format(where=where), params)

    place = "platform, workspace, channel, thread, private"

    def where_said(row: Any, offset: int) -> dict[str, Any]:
        platform_, workspace, channel, thread, private = row[offset : offset + 5]
        return {
            "platform": platform_,
            "workspace": workspace,
            "channel": "(direct message)" if private else channel,
            "thread": thread,
            "private": bool(private),
        }

    messages = [
        {"id": r[0], "role": r[1], "text": open_(r[2]), "time": _when(r[3]), **where_said(r, 4)}
        for r in await rows(
            f"SELECT id, role, text, created_at, {place} FROM turns"
            " WHERE {where} AND role != 'reset' ORDER BY id"
        )
    ]
    memories = [
        {"id": r[0], "kind": r[1], "text": open_(r[2]), "time": _when(r[3]), **where_said(r, 4)}
        for r in await rows(
            f"SELECT id, kind, text, created_at, {place} FROM memories WHERE {{where}} ORDER BY id"
        )
    ]
    profile = [
        {"id": r[0], "key": r[1], "value": open_(r[2]), "time": _when(r[3]), **where_said(r, 4)}
        for r in await rows(
            f"SELECT id, key, value, created_at, {place} FROM facts WHERE {{where}} ORDER BY id"
        )
    ]
    summaries = [
        {"id": r[0], "text": open_(r[1]), "time": _when(r[2]), **where_said(r, 3)}
        for r in await rows(
            f"SELECT id, text, updated_at, {place} FROM summaries WHERE {{where}} ORDER BY id"
        )
    ]
    plugin_data = [
        {
            "id": r[0],
            "plugin": r[1],
            "key": r[2],
            "value": json.loads(open_(r[3])),
            "time": _when(r[4]),
            **where_said(r, 5),
        }
        for r in await rows(
            f"SELECT id, plugin, key, value, updated_at, {place} FROM plugin_data"
            " WHERE {where} AND user_key != '' ORDER BY id"
        )
    ]
    return {
        "format": FORMAT_VERSION,
        "exported_at": _when(time.time()),
        "platform": platform,
        "user_key": user_key,
        "opted_out": await is_opted_out(store, platform, user_key),
        "blocked": await is_blocked(store, platform, user_key),
        "consents": await consents(store, platform, user_key),
        "messages": messages,
        "memories": memories,
        "profile": profile,
        "summaries": summaries,
        "emotion_readings": [
            {
                "id": r[0],
                "turn": r[1],
                "ekman": r[2],
                "labels": json.loads(r[3]),
                "valence": r[4],
                "arousal": r[5],
                "time": _when(r[6]),
                **where_said(r, 7),
            }
            for r in await rows(
                f"SELECT id, turn_id, ekman, labels, valence, arousal,"
                f" created_at, {place} FROM emotions WHERE {{where}} ORDER BY id"
            )
        ],
        "plugin_data": plugin_data,
    }


async def counts(store: Store, platform: str, user_key: str) -> dict[str, int]:
    where, params = owner_scope(platform, user_key).where()
    result: dict[str, int] = {}
    for table in ("turns", "memories", "facts", "summaries", "emotions", "plugin_data"):
        extra = " AND role != 'reset'" if table == "turns" else ""
        row = await store.row(f"SELECT COUNT(*) FROM {table} WHERE {where}{extra}", params)
        result[table] = int(row[0]) if row else 0
    return result


async def forget(
    store: Store, memory: LongTermMemory | None, platform: str, user_key: str
) -> dict[str, int]:
    """Erase everything about one person, then compact the files so no copy remains."""
    where, params = owner_scope(platform, user_key).where()
    deleted: dict[str, int] = {}
    async with store.transaction() as db:
        # Summaries of every conversation they spoke in may hold their words: drop them
        # (they are rebuilt from what remains).
        cursor = await db.execute(
            "DELETE FROM summaries WHERE EXISTS (SELECT 1 FROM turns t WHERE"
            " t.platform = ? AND t.user_key = ? AND t.bot = summaries.bot"
            " AND t.platform = summaries.platform AND t.workspace = summaries.workspace"
            " AND t.channel = summaries.channel AND t.thread = summaries.thread)",
            params,
        )
        deleted["summaries"] = cursor.rowcount
        for table in (
            "summaries",
            "facts",
            "memories",
            "emotions",
            "plugin_data",
            "turns",
            "optouts",
            "consents",
            "inbox",  # messages not yet answered, and the records of answered ones
            "cursors",  # where their DM was last read
        ):
            cursor = await db.execute(f"DELETE FROM {table} WHERE {where}", params)
            deleted[table] = deleted.get(table, 0) + cursor.rowcount
    await store.compact()
    if memory is not None:
        memory.invalidate()
    log.info("erased a user's data on %s: %s", platform, json.dumps(deleted))
    return deleted


async def is_blocked(store: Store, platform: str, user_key: str) -> bool:
    """Whether an admin blocked this person (/block); kept after /forget, as moderation."""
    row = await store.row(
        "SELECT 1 FROM blocks WHERE platform = ? AND user_key = ?", (platform, user_key)
    )
    return row is not None


async def is_opted_out(store: Store, platform: str, user_key: str) -> bool:
    row = await store.row(
        "SELECT 1 FROM optouts WHERE platform = ? AND user_key = ?", (platform, user_key)
    )
    return row is not None


async def set_opted_out(store: Store, platform: str, user_key: str, out: bool) -> None:
    """Opting out also withdraws every consent (it is not restored by opting in)."""
    async with store.transaction() as db:
        if out:
            await db.execute(
                "INSERT OR IGNORE INTO optouts (platform, user_key, created_at) VALUES (?, ?, ?)",
                (platform, user_key, time.time()),
            )
            await db.execute(
                "DELETE FROM consents WHERE platform = ? AND user_key = ?", (platform, user_key)
            )
        else:
            await db.execute(
                "DELETE FROM optouts WHERE platform = ? AND user_key = ?", (platform, user_key)
            )


CONSENT_PURPOSES = ("training",)


async def consents(store: Store, platform: str, user_key: str) -> list[str]:
    """What this person agreed to (an empty list: nothing beyond being answered)."""
    rows = await store.rows(
        "SELECT purpose FROM consents WHERE platform = ? AND user_key = ? ORDER BY purpose",
        (platform, user_key),
    )
    return [str(row[0]) for row in rows]


async def set_consent(
    store: Store, platform: str, user_key: str, purpose: str, given: bool
) -> None:
    if purpose not in CONSENT_PURPOSES:
        raise ValueError(f"unknown consent purpose {purpose!r}")
    async with store.transaction() as db:
        if given:
            await db.execute(
                "INSERT OR IGNORE INTO consents (platform, user_key, purpose, created_at)"
                " VALUES (?, ?, ?, ?)",
                (platform, user_key, purpose, time.time()),
            )
        else:
            await db.execute(
                "DELETE FROM consents WHERE platform = ? AND user_key = ? AND purpose = ?",
                (platform, user_key, purpose),
            )


async def purge_older_than(store: Store, memory: LongTermMemory | None, days: float) -> int:
    """Retention: delete everything older than ``days`` (0 keeps everything).

    Returns the number of rows deleted directly (replies and memories that go with
    an old message are deleted with it and not counted)."""
    if days <= 0:
        return 0
    cutoff = time.time() - days * 86400
    total = 0
    async with store.transaction() as db:
        for table, column in (
            ("turns", "created_at"),
            ("memories", "created_at"),
            ("facts", "created_at"),
            ("summaries", "updated_at"),
        ):
            cursor = await db.execute(f"DELETE FROM {table} WHERE {column} < ?", (cutoff,))
            total += cursor.rowcount
    if total:
        await store.compact()
        if memory is not None:
            memory.invalidate()
        log.info("retention: deleted %d rows older than %g days", total, days)
    return total


class DataServices(Protocol):
    """What :class:`PersonalData` reads and changes (the bot is one)."""

    store: Store
    memory: LongTermMemory | None
    facts: Profiles
    emotion_history: EmotionHistory
    access: Access
    profile: BotProfile


@dataclass(frozen=True, slots=True)
class Explanation:
    """What the bot's last answer to someone in a place was based on (``/why``)."""

    answer: str
    reading: StoredReading | None
    """How the message it answered read (its emotion), when it was read."""
    context_turns: int
    summary: bool
    recalled: list[str]


class PersonalData:
    """Everything kept about the person who sent ``message``, read and changed in their
    own scope only: what plugins (the built-in ``privacy`` one) use for people's data
    rights. ``scope`` is the turn's (what this place may see); ownership is always the
    person's own keyed id on that platform."""

    def __init__(
        self, services: DataServices, message: Message, scope: Scope, user_key: str
    ) -> None:
        self._services = services
        self._message = message
        self._scope = scope
        self._owner = (message.place.platform, user_key)

    @property
    def _store(self) -> Store:
        return self._services.store

    async def counts(self) -> dict[str, int]:
        return await counts(self._store, *self._owner)

    async def export(self) -> dict[str, Any]:
        return await export(self._store, *self._owner)

    async def forget(self) -> dict[str, int]:
        return await forget(self._store, self._services.memory, *self._owner)

    async def opted_out(self) -> bool:
        return await is_opted_out(self._store, *self._owner)

    async def set_opted_out(self, out: bool) -> None:
        await set_opted_out(self._store, *self._owner, out)

    async def consents(self) -> list[str]:
        return await consents(self._store, *self._owner)

    async def set_consent(self, purpose: str, given: bool) -> None:
        await set_consent(self._store, *self._owner, purpose, given)

    @property
    def retention_days(self) -> float:
        """How long anything is kept (0: until they erase it)."""
        return self._services.profile.privacy.retention_days

    @property
    def encrypted(self) -> bool:
        """Whether stored text is encrypted at rest."""
        return self._services.store.privacy.cipher.enabled

    @property
    def redacted(self) -> bool:
        """Whether e-mail addresses, phone and card numbers are removed before storing."""
        return self._services.store.privacy.redact_stored

    @property
    def blocked(self) -> bool:
        """Blocked by the operator's settings or an admin's /block."""
        return self._services.access.blocks(self._message.speaker, self._owner[1])

    async def facts(self) -> list[StoredFact]:
        """The facts they stated, as far as this place may see."""
        return await self._services.facts.about(self._scope, self._owner[1])

    async def reset(self) -> None:
        """Start this conversation afresh (earlier turns leave the context)."""
        await self._store.reset(self._services.profile.name, self._message)

    async def last_answer(self) -> Explanation | None:
        """The bot's last answer to them here and what it was based on."""
        services, scope = self._services, self._scope
        answer = await self._store.last_answer(
            services.profile.name, self._message.place, scope, self._owner[1]
        )
        if answer is None:
            return None
        asked = await self._store.turn(answer.answers, scope) if answer.answers else None
        reading = await services.emotion_history.for_turn(scope, asked.id) if asked else None
        recalled = await services.memory.by_ids(scope, answer.recalled) if services.memory else []
        return Explanation(
            answer.text,
            reading,
            len(answer.context),
            answer.summary is not None,
            [m.text for m in recalled],
        )
