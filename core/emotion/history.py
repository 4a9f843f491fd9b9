"""Emotion readings kept with their turns, and each person's recent trajectory."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass

from core.emotion.labels import Reading
from core.privacy import Scope
from core.storage.store import Store
from core.types import Message


@dataclass(frozen=True, slots=True)
class StoredReading:
    id: int
    turn_id: int | None
    ekman: str
    labels: dict[str, float]
    valence: float
    arousal: float
    created_at: float


@dataclass(frozen=True, slots=True)
class Trajectory:
    """How someone has felt over their last few messages here, oldest first."""

    readings: tuple[StoredReading, ...]

    @property
    def mean_valence(self) -> float:
        return sum(r.valence for r in self.readings) / len(self.readings) if self.readings else 0.0

    @property
    def trend(self) -> float:
        """Valence of the latest half minus the earlier half: > 0 improving, < 0 worsening."""
        values = [r.valence for r in self.readings]
        if len(values) < 2:
            return 0.0
        half = len(values) // 2
        return sum(values[half:]) / (len(values) - half) - sum(values[:half]) / half

    def persistent(self, group: str, at_least: int = 2) -> bool:
        """True when the last ``at_least`` readings were all in Ekman ``group``."""
        tail = self.readings[-at_least:]
        return len(tail) == at_least and all(r.ekman == group for r in tail)


class EmotionHistory:
    def __init__(self, store: Store) -> None:
        self.store = store

    async def add(self, message: Message, reading: Reading, turn_id: int | None) -> int:
        predicted = {name: round(reading.labels[name], 4) for name in reading.predicted}
        async with self.store.transaction() as db:
            cursor = await db.execute(
                "INSERT INTO emotions (turn_id, platform, workspace, channel, thread, private,"
                " user_key, ekman, labels, valence, arousal, created_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    turn_id,
                    *self.store.where_said(message),
                    reading.ekman,
                    json.dumps(predicted),
                    reading.valence,
                    reading.arousal,
                    time.time(),
                ),
            )
        assert cursor.lastrowid is not None
        return cursor.lastrowid

    async def trajectory(self, scope: Scope, user_key: str, *, limit: int = 6) -> Trajectory:
        """``user_key``'s latest readings, as far as ``scope`` may see."""
        where, params = scope.where()
        rows = await self.store.rows(
            f"SELECT id, turn_id, ekman, labels, valence, arousal, created_at FROM emotions"
            f" WHERE {where} AND user_key = ? ORDER BY id DESC LIMIT ?",
            (*params, user_key, limit),
        )
        return Trajectory(
            tuple(
                StoredReading(r[0], r[1], r[2], json.loads(r[3]), r[4], r[5], r[6])
                for r in reversed(rows)
            )
        )

    async def for_turn(self, scope: Scope, turn_id: int) -> StoredReading | None:
        where, params = scope.where()
        row = await self.store.row(
            f"SELECT id, turn_id, ekman, labels, valence, arousal, created_at FROM emotions"
            f" WHERE {where} AND turn_id = ?",
            (*params, turn_id),
        )
        if row is None:
            return None
        return StoredReading(row[0], row[1], row[2], json.loads(row[3]), row[4], row[5], row[6])
