"""Long-term memory: what people said, embedded, and recalled by meaning within a scope.

Vectors are stored with their rows in SQLite (durable, erased with them). For
speed, each scope's vectors are also held in memory as one matrix, loaded by a
query that carries the scope's own ``WHERE`` clause: an index never holds a row
its scope could not read. A search is one matrix-vector product.
"""

from __future__ import annotations

import abc
import asyncio
import hashlib
import math
import re
import time
from collections import OrderedDict
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from core.errors import ModelNotFoundError
from core.models import embedded_model_path
from core.privacy import Scope
from core.storage.store import Store
from core.types import Message

Vectors = npt.NDArray[np.float32]

EMBEDDED = "embedded"


class Embedder(abc.ABC):
    """Turns texts into unit-length vectors whose dot product is their similarity."""

    dimensions: int = 384

    async def start(self) -> None:  # noqa: B027 - optional hook
        """Load the model."""

    async def close(self) -> None:  # noqa: B027 - optional hook
        """Release the model."""

    @abc.abstractmethod
    async def embed(self, texts: Sequence[str]) -> Vectors:
        """One row per text, float32, unit length."""


class SentenceEmbedder(Embedder):
    """A sentence-transformers model (by default all-MiniLM-L6-v2, packaged on PyPI)."""

    def __init__(self, model: str = EMBEDDED) -> None:
        self.model_name = model
        self._model: Any = None
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="embed")

    async def start(self) -> None:
        await asyncio.get_running_loop().run_in_executor(self._executor, self._load)

    def _load(self) -> None:
        import transformers
        from sentence_transformers import SentenceTransformer

        transformers.utils.logging.disable_progress_bar()

        where = str(embedded_model_path()) if self.model_name == EMBEDDED else self.model_name
        try:
            self._model = SentenceTransformer(where, device="cpu")
        except OSError as error:
            raise ModelNotFoundError(f"cannot load embedding model {where!r}: {error}") from None
        self.dimensions = int(self._model.get_embedding_dimension())

    async def close(self) -> None:
        self._executor.shutdown(wait=True, cancel_futures=True)
        self._model = None

    async def embed(self, texts: Sequence[str]) -> Vectors:
        if not texts:
            return np.zeros((0, self.dimensions), dtype=np.float32)
        model = self._model

        def run() -> Vectors:
            vectors = model.encode(
                list(texts),
                batch_size=32,
                normalize_embeddings=True,
                convert_to_numpy=True,
                show_progress_bar=False,
            )
            return np.asarray(vectors, dtype=np.float32)

        return await asyncio.get_running_loop().run_in_executor(self._executor, run)


class FakeEmbedder(Embedder):
    """Deterministic bag-of-words vectors for tests: shared words mean similarity."""

    def __init__(self, dimensions: int = 64) -> None:
        self.dimensions = dimensions
        self.calls = 0
        """How many times :meth:`embed` was called."""

    async def embed(self, texts: Sequence[str]) -> Vectors:
        self.calls += 1
        out = np.zeros((len(texts), self.dimensions), dtype=np.float32)
        for row, text in enumerate(texts):
            for word in re.findall(r"\w+", text.lower()):
                out[row, int(hashlib.md5(word.encode()).hexdigest(), 16) % self.dimensions] += 1
            norm = np.linalg.norm(out[row])
            out[row] = out[row] / norm if norm else out[row]
            if not norm:
                out[row, 0] = 1.0
        return out


# Words that say nothing to remember on their own: greetings, thanks, assent, laughter.
_PHATIC = frozenset(
    "hi hello hey hiya heya yo sup ok okay k kk yes yeah yea yep yup no nope nah sure "
    "thanks thank you thx ty np welcome lol lmao rofl cool nice great good awesome bye "
    "goodbye cya night morning evening gm gn hmm hm mhm oh ah aw wow right alright fine "
    "me too same please pls so much very really".split()
)
_LAUGHTER = re.compile(r"a?(?:h[aei])+h?|x?d+")


def worth_remembering(text: str) -> bool:
    """Whether ``text`` is kept as a long-term memory: anything but a message of only
    greetings, thanks, assent or laughter ("hi!", "ok thanks", "haha yes", an emoji).
    Those tell the model nothing later, and every search would find them alike; they
    stay in the conversation's history all the same."""
    words = re.findall(r"[^\W_]+(?:'[^\W_]+)?", text.lower())
    return any(w not in _PHATIC and not _LAUGHTER.fullmatch(w) for w in words)


@dataclass(frozen=True, slots=True)
class Recollection:
    id: int
    kind: str
    text: str
    created_at: float
    private: bool
    similarity: float
    score: float
    turn_id: int | None


class _Index:
    """One scope's memories as arrays, with room to grow: adding one is amortised O(1)."""

    def __init__(
        self,
        ids: npt.NDArray[np.int64],
        vectors: Vectors,
        created: npt.NDArray[np.float64],
        turns: npt.NDArray[np.int64],
    ) -> None:
        self._ids, self._vectors, self._created, self._turns = ids, vectors, created, turns
        self.size = len(ids)

    @property
    def ids(self) -> npt.NDArray[np.int64]:
        return self._ids[: self.size]

    @property
    def vectors(self) -> Vectors:
        return self._vectors[: self.size]

    @property
    def created(self) -> npt.NDArray[np.float64]:
        return self._created[: self.size]

    @property
    def turns(self) -> npt.NDArray[np.int64]:
        return self._turns[: self.size]

    def append(self, memory_id: int, vector: Vectors, created: float, turn_id: int) -> None:
        if self.size == len(self._ids):
            room = max(16, 2 * self.size)
            self._ids = np.resize(self._ids, room)
            self._created = np.resize(self._created, room)
            self._turns = np.resize(self._turns, room)
            vectors = np.zeros((room, self._vectors.shape[1]), dtype=np.float32)
            vectors[: self.size] = self._vectors[: self.size]
            self._vectors = vectors
        n = self.size
        self._ids[n], self._created[n], self._turns[n] = memory_id, created, turn_id
        self._vectors[n] = vector
        self.size += 1

    def __len__(self) -> int:
        return self.size


class LongTermMemory:
    """Store and recall memories; every read names a :class:`Scope`."""

    def __init__(self, store: Store, embedder: Embedder, *, max_cached: int = 2_000_000) -> None:
        self.store = store
        self.embedder = embedder
        self.max_cached = max_cached
        self._indexes: OrderedDict[Scope, _Index] = OrderedDict()
        store.on_rollback.append(self.invalidate)  # add() indexes rows before they commit

    async def add(
        self,
        message: Message,
        text: str,
        vector: Vectors,
        *,
        turn_id: int | None,
        kind: str = "message",
        created_at: float | None = None,
    ) -> int:
        """Remember ``text`` (said in ``message``'s place, by its speaker)."""
        where = self.store.where_said(message)
        created = time.time() if created_at is None else created_at
        row = np.asarray(vector, dtype=np.float32).reshape(1, -1)
        async with self.store.transaction() as db:
            cursor = await db.execute(
                "INSERT INTO memories (turn_id, kind, platform, workspace, channel, thread,"
                " private, user_key, text, embedding, created_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (turn_id, kind, *where, self.store.seal(text), row.tobytes(), created),
            )
        memory_id = cursor.lastrowid
        assert memory_id is not None
        platform, workspace, channel, _thread, private, user_key = where
        for scope in Scope.readers(
            str(platform), str(workspace), str(channel), bool(private), str(user_key)
        ):
            if (index := self._indexes.get(scope)) is not None:
                index.append(memory_id, row[0], created, turn_id or 0)
        return memory_id

    async def add_many(
        self,
        message: Message,
        items: Sequence[tuple[str, float, int | None]],
        vectors: Vectors,
        kind: str = "message",
    ) -> list[int]:
        """Bulk insert (benchmarks, evaluation): ``(text, created_at, turn_id)`` per vector."""
        where = self.store.where_said(message)
        rows = [
            (
                turn,
                kind,
                *where,
                self.store.seal(text),
                np.asarray(vectors[i], dtype=np.float32).tobytes(),
                created,
            )
            for i, (text, created, turn) in enumerate(items)
        ]
        async with self.store.transaction() as db:
            async with db.execute("SELECT COALESCE(MAX(id), 0) FROM memories") as cursor:
                first = int((await cursor.fetchone() or (0,))[0]) + 1
            await db.executemany(
                "INSERT INTO memories (turn_id, kind, platform, workspace, channel, thread,"
                " private, user_key, text, embedding, created_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                rows,
            )
        self.invalidate()
        return list(range(first, first + len(rows)))

    def invalidate(self) -> None:
        """Forget the in-memory indexes (after deletions); they reload from the database."""
        self._indexes.clear()

    async def _index(self, scope: Scope) -> _Index:
        scope = scope.canonical()  # the key add() finds it by
        index = self._indexes.get(scope)
        if index is not None:
            self._indexes.move_to_end(scope)
            return index
        where, params = scope.where()
        rows = await self.store.rows(
            f"SELECT id, embedding, created_at, COALESCE(turn_id, 0) FROM memories WHERE {where}",
            params,
        )
        dim = self.embedder.dimensions
        index = _Index(
            ids=np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows)),
            vectors=(
                np.frombuffer(b"".join(r[1] for r in rows), dtype=np.float32).reshape(
                    len(rows), dim
                )
                if rows
                else np.zeros((0, dim), np.float32)
            ),
            created=np.fromiter((r[2] for r in rows), dtype=np.float64, count=len(rows)),
            turns=np.fromiter((r[3] for r in rows), dtype=np.int64, count=len(rows)),
        )
        self._indexes[scope] = index
        while (
            sum(len(i) for i in self._indexes.values()) > self.max_cached and len(self._indexes) > 1
        ):
            self._indexes.popitem(last=False)
        return index

    async def search(
        self,
        scope: Scope,
        query: Vectors,
        *,
        k: int = 5,
        exclude_turns: Sequence[int] = (),
        min_similarity: float = -1.0,
        half_life_days: float = 30.0,
        recency_weight: float = 0.1,
        now: float | None = None,
    ) -> list[Recollection]:
        """The ``k`` best memories in ``scope``: similarity, nudged towards recent ones."""
        index = await self._index(scope)
        if not len(index.ids) or k <= 0:
            return []
        similarity = index.vectors @ np.asarray(query, dtype=np.float32).reshape(-1)
        age_days = ((now or time.time()) - index.created) / 86400.0
        recency = np.power(0.5, np.clip(age_days, 0, None) / max(half_life_days, 1e-6))
        score = similarity + recency_weight * recency
        mask = similarity >= min_similarity
        if exclude_turns:
            mask &= ~np.isin(index.turns, np.asarray(exclude_turns, dtype=np.int64))
        candidates = np.flatnonzero(mask)
        if not len(candidates):
            return []
        if len(candidates) > k:  # O(n) selection first: a full sort of 1M scores is slow
            candidates = candidates[np.argpartition(-score[candidates], k - 1)[:k]]
        top = candidates[np.argsort(-score[candidates], kind="stable")]
        return await self._fetch(
            scope, [(int(index.ids[i]), float(similarity[i]), float(score[i])) for i in top]
        )

    async def _fetch(
        self, scope: Scope, ranked: list[tuple[int, float, float]]
    ) -> list[Recollection]:
        where, params = scope.where()
        ids = [r[0] for r in ranked]
        marks = ",".join("?" * len(ids))
        found = await self.store.rows(
            f"SELECT id, kind, text, created_at, private, turn_id FROM memories"
            f" WHERE id IN ({marks}) AND {where}",
            (*ids, *params),
        )
        rows = {r[0]: r for r in found}
        open_ = self.store.privacy.cipher.open
        return [
            Recollection(
                i,
                rows[i][1],
                open_(rows[i][2]),
                rows[i][3],
                bool(rows[i][4]),
                sim,
                score,
                rows[i][5],
            )
            for i, sim, score in ranked
            if i in rows
        ]

    async def by_ids(self, scope: Scope, ids: Sequence[int]) -> list[Recollection]:
        """Memories by id, as far as ``scope`` may see them (for /why)."""
        if not ids:
            return []
        return await self._fetch(scope, [(i, math.nan, math.nan) for i in ids])
