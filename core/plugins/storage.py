"""Storage for plugins, scoped the way memory is.

In a handler, ``ctx.storage`` holds the speaker's own entries: written with the place
they were made in, read back only within the turn's privacy scope (a DM sees the
person's entries from everywhere; a group channel only those made in that channel),
exported by ``/export`` and erased by ``/forget``. ``ctx.channel_storage`` holds a
group place's own settings (no person's data). Jobs get system-level access to a
plugin's entries (``due()``), e.g. to deliver reminders.

Values are JSON; they are encrypted at rest when ``SOCIALBOT_ENCRYPTION_KEY`` is set.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

from core.privacy import Scope
from core.storage.store import Store
from core.types import Message


@dataclass(frozen=True, slots=True)
class Entry:
    id: int
    key: str
    value: Any
    due_at: float | None
    user_key: str
    platform: str
    private: bool
    updated_at: float


_COLUMNS = "id, key, value, due_at, user_key, platform, private, updated_at"


class PluginStorage:
    def __init__(
        self,
        store: Store,
        plugin: str,
        *,
        scope: Scope | None = None,
        message: Message | None = None,
        user_key: str | None = None,
    ) -> None:
        self.store = store
        self.plugin = plugin
        self.scope = scope
        self.message = message
        # In a DM the place's own entries are its person's.
        if user_key == "" and message is not None and message.place.is_private and scope:
            user_key = scope.user_key
        self.user_key = user_key

    def _entry(self, row: Any) -> Entry:
        value = json.loads(self.store.privacy.cipher.open(row[2]))
        return Entry(row[0], row[1], value, row[3], row[4], row[5], bool(row[6]), row[7])

    def _where(self) -> tuple[str, tuple[object, ...]]:
        if self.scope is None or self.user_key is None:
            raise RuntimeError("this storage is system-level: use due(), all() or remove()")
        where, params = self.scope.where()
        return f"plugin = ? AND {where} AND user_key = ?", (self.plugin, *params, self.user_key)

    # --- within a turn's scope -------------------------------------------------------------
    async def get(self, key: str, default: Any = None) -> Any:
        where, params = self._where()
        row = await self.store.row(
            f"SELECT {_COLUMNS} FROM plugin_data WHERE {where} AND key = ?"
            " ORDER BY updated_at DESC LIMIT 1",
            (*params, key),
        )
        return self._entry(row).value if row else default

    async def items(self, prefix: str = "", *, everyone: bool = False) -> list[Entry]:
        """The entries whose key starts with ``prefix``. ``everyone``: every person's
        entries that this scope may see (in a group channel, all made in it), not just
        the speaker's, as recall sees the channel's memories."""
        where, params = self._where()
        if everyone:
            assert self.scope is not None
            scope_where, scope_params = self.scope.where()
            where, params = (
                f"plugin = ? AND {scope_where} AND user_key != ''",
                (
                    self.plugin,
                    *scope_params,
                ),
            )
        rows = await self.store.rows(
            f"SELECT {_COLUMNS} FROM plugin_data WHERE {where} AND key LIKE ? ESCAPE '\\'"
            " ORDER BY id",
            (*params, _like_prefix(prefix)),
        )
        return [self._entry(row) for row in rows]

    async def set(self, key: str, value: Any, *, due_at: float | None = None) -> None:
        """Keep ``value`` (JSON-serialisable) under ``key``, for this place and person."""
        self._where()  # only within a turn
        assert self.message is not None and self.user_key is not None
        place = self.store.privacy.place(self.message.place)
        sealed = self.store.privacy.cipher.seal(json.dumps(value, ensure_ascii=False))
        now = time.time()
        async with self.store.transaction() as db:
            await db.execute(
                "INSERT INTO plugin_data (plugin, key, platform, workspace, channel, thread,"
                " private, user_key, value, due_at, created_at, updated_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
                " ON CONFLICT (plugin, key, platform, workspace, channel, thread, private,"
                " user_key) DO UPDATE SET value = excluded.value, due_at = excluded.due_at,"
                " updated_at = excluded.updated_at",
                (
                    self.plugin,
                    key,
                    place.platform,
                    place.workspace,
                    place.channel,
                    place.thread,
                    int(place.private),
                    self.user_key,
                    sealed,
                    due_at,
                    now,
                    now,
                ),
            )

    async def delete(self, key: str) -> int:
        where, params = self._where()
        async with self.store.transaction() as db:
            cursor = await db.execute(
                f"DELETE FROM plugin_data WHERE {where} AND key = ?", (*params, key)
            )
            return cursor.rowcount

    # --- system level (jobs) -------------------------------------------------------------
    async def due(self, now: float | None = None) -> list[Entry]:
        """Every entry of this plugin whose ``due_at`` has come, oldest first."""
        rows = await self.store.rows(
            f"SELECT {_COLUMNS} FROM plugin_data WHERE plugin = ? AND due_at IS NOT NULL"
            " AND due_at <= ? ORDER BY due_at",
            (self.plugin, time.time() if now is None else now),
        )
        return [self._entry(row) for row in rows]

    async def next_due(self) -> float | None:
        row = await self.store.row(
            "SELECT MIN(due_at) FROM plugin_data WHERE plugin = ? AND due_at IS NOT NULL",
            (self.plugin,),
        )
        return float(row[0]) if row and row[0] is not None else None

    async def remove(self, entry_id: int) -> None:
        async with self.store.transaction() as db:
            await db.execute(
                "DELETE FROM plugin_data WHERE plugin = ? AND id = ?", (self.plugin, entry_id)
            )


def _like_prefix(prefix: str) -> str:
    escaped = prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return escaped + "%"
