"""``socialbot eval memory``: how well long-term memory finds what a question needs.

Each line of the data file is one conversation::

    {"id": str,
     "turns": [{"id": str, "speaker": str, "text": str, "session": int, "time": str}],
     "questions": [{"q": str, "answer": str | null, "category": int,
                    "evidence": [turn ids]}]}

All turns of a conversation are stored as the memory of one scope (with their
times, so recency counts as in the product); each question is embedded and
searched in that scope. recall@k is the share of a question's evidence turns
found in the top k, averaged over questions that have evidence.
"""

from __future__ import annotations

import json
import statistics
import tempfile
import time
from collections import defaultdict
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from core._files import read_lines
from core.errors import ConfigError
from core.memory.longterm import Embedder, LongTermMemory, worth_remembering
from core.privacy import Cipher, Privacy, Pseudonymizer
from core.settings import MemorySettings
from core.storage.store import Store
from core.types import Message, Place, PlaceKind, Speaker

KS = (1, 5, 10, 25)


class EvalTurn(BaseModel):
    id: str
    speaker: str
    text: str
    session: int = 1
    time: str = ""


class EvalQuestion(BaseModel):
    q: str
    answer: str | None = None
    category: int = 0
    evidence: list[str] = []


class EvalConversation(BaseModel):
    id: str
    turns: list[EvalTurn]
    questions: list[EvalQuestion]


def read_conversations(path: Path) -> Iterator[EvalConversation]:
    lines = read_lines(path)
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            yield EvalConversation.model_validate_json(line)
        except ValidationError as error:
            first = error.errors()[0]
            where = ".".join(str(p) for p in first["loc"])
            raise ConfigError(f"{path}:{number}: {where}: {first['msg']}") from None


def _timestamp(value: str, fallback: float) -> float:
    if not value:
        return fallback
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return fallback


async def evaluate_memory(
    path: Path,
    embedder: Embedder,
    *,
    k: int = 10,
    settings: MemorySettings | None = None,
    predictions: Path | None = None,
) -> dict[str, Any]:
    settings = settings or MemorySettings()
    depth = max(k, *KS)
    hits: dict[int, list[float]] = {size: [] for size in KS}
    by_category: dict[int, dict[int, list[float]]] = defaultdict(lambda: {s: [] for s in KS})
    unscored = 0
    search_ms: list[float] = []
    out = predictions.open("w", encoding="utf-8") if predictions else None
    with tempfile.TemporaryDirectory(prefix="socialbot-eval-") as folder:
        privacy = Privacy(Pseudonymizer(b"evaluation-only-key"), Cipher(), redact_stored=False)
        store = await Store.open(Path(folder) / "eval.db", privacy, synchronous="NORMAL")
        memory = LongTermMemory(store, embedder)
        try:
            for conversation in read_conversations(path):
                speaker = Speaker("eval", conversation.id)
                message = Message(speaker, Place("eval", "dm", PlaceKind.DM), "")
                scope = privacy.scope(message)
                base = time.time() - 86400 * 365
                times = [_timestamp(t.time, base + 86400 * t.session) for t in conversation.turns]
                # what the product keeps: small talk is not remembered (worth_remembering)
                kept = [
                    (t, when)
                    for t, when in zip(conversation.turns, times, strict=True)
                    if worth_remembering(t.text)
                ]
                vectors = await embedder.embed([t.text for t, _ in kept])
                ids = await memory.add_many(
                    message, [(t.text, when, None) for t, when in kept], vectors
                )
                turn_of = dict(zip(ids, (t.id for t, _ in kept), strict=True))
                now = max(times, default=base)
                questions = await embedder.embed([q.q for q in conversation.questions])
                for question, vector in zip(conversation.questions, questions, strict=True):
                    started = time.perf_counter()
                    found = await memory.search(
                        scope,
                        vector,
                        k=depth,
                        min_similarity=-1.0,
                        half_life_days=settings.recency_half_life_days,
                        now=now,
                    )
                    search_ms.append((time.perf_counter() - started) * 1000)
                    ranked = [turn_of[m.id] for m in found]
                    if out:
                        out.write(
                            json.dumps(
                                {
                                    "conversation": conversation.id,
                                    "q": question.q,
                                    "category": question.category,
                                    "evidence": question.evidence,
                                    "retrieved": ranked[:k],
                                }
                            )
                            + "\n"
                        )
                    evidence = set(question.evidence)
                    if not evidence:
                        unscored += 1
                        continue
                    for size in KS:
                        recall = len(evidence & set(ranked[:size])) / len(evidence)
                        hits[size].append(recall)
                        by_category[question.category][size].append(recall)
                memory.invalidate()
        finally:
            await store.close()
            if out:
                out.close()

    def summary(groups: dict[int, list[float]]) -> dict[str, Any]:
        scored = len(groups[KS[0]])
        result: dict[str, Any] = {"questions": scored}
        for size in KS:
            result[f"recall@{size}"] = round(statistics.fmean(groups[size]), 4) if scored else None
        return result

    return {
        **summary(hits),
        "unscored_questions": unscored,
        "per_category": {str(c): summary(g) for c, g in sorted(by_category.items())},
        "search_ms_median": round(statistics.median(search_ms), 3) if search_ms else None,
    }
