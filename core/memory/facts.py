"""User profile: simple facts people state about themselves, kept in their scope.

Extraction is deliberately plain (patterns over first-person statements), so
what is kept is exactly what the person said and can be shown back to them
honestly. Each fact is stored with the place it was said, like every memory.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass

from core.privacy import Scope
from core.storage.store import Store
from core.types import Message

_END = r"(?=[.!?,;]|\s+(?:and|but|because|so)\s|$)"
_PHRASE = r"([\w' -]{2,60}?)"

# (key, pattern, how the fact is told back to its owner)
PATTERNS: tuple[tuple[str, re.Pattern[str], str], ...] = (
    (
        "name",
        re.compile(r"\b(?:my name is|call me|i'?m called)\s+([A-Za-z][\w'-]{1,30})", re.I),
        "Your name is {}.",
    ),
    (
        "age",
        re.compile(r"\bi(?:'m| am) (\d{1,3}) (?:years? old|yo)\b", re.I),
        "You are {} years old.",
    ),
    ("home", re.compile(rf"\bi live in {_PHRASE}{_END}", re.I), "You live in {}."),
    ("origin", re.compile(rf"\bi(?:'m| am) from {_PHRASE}{_END}", re.I), "You are from {}."),
    ("work", re.compile(rf"\bi work ((?:as an?|as|at|in) {_PHRASE}){_END}", re.I), "You work {}."),
    (
        "birthday",
        re.compile(rf"\bmy birthday is (?:on )?{_PHRASE}{_END}", re.I),
        "Your birthday is {}.",
    ),
    (
        "pet",
        re.compile(
            r"\bmy ((?:dog|cat|puppy|kitten|rabbit|parrot|hamster|horse)(?:'s name is|"
            r" is called| is named| named)\s+[A-Za-z][\w'-]{1,30})",
            re.I,
        ),
        "Your {}.",
    ),
    (
        "likes",
        re.compile(rf"\bi (?:really |absolutely )?(?:like|love|enjoy|adore) {_PHRASE}{_END}", re.I),
        "You like {}.",
    ),
    (
        "dislikes",
        re.compile(rf"\bi (?:really )?(?:hate|dislike|can'?t stand) {_PHRASE}{_END}", re.I),
        "You dislike {}.",
    ),
    (
        "event",
        re.compile(
            rf"\bi (?:just |recently )?((?:got|passed|failed|lost|started|finished|"
            rf"graduated|adopted|moved|married|broke|won|quit)\b[\w' -]{{0,60}}?){_END}",
            re.I,
        ),
        "You told me you {}.",
    ),
)
_VAGUE = frozenset({"it", "that", "this", "them", "you", "him", "her", "so", "too", "to"})
SINGLE_VALUED = frozenset({"name", "age", "home", "origin", "work", "birthday"})


@dataclass(frozen=True, slots=True)
class Fact:
    key: str
    value: str


def extract(text: str) -> list[Fact]:
    """Facts a message states about its speaker (first person only)."""
    found: list[Fact] = []
    for key, pattern, _ in PATTERNS:
        for match in pattern.finditer(text):
            value = match.group(1).strip()
            if value.lower() in _VAGUE:
                continue
            found.append(Fact(key, value.capitalize() if key == "name" else value))
    return found


@dataclass(frozen=True, slots=True)
class StoredFact:
    id: int
    key: str
    value: str
    private: bool
    created_at: float


class Profiles:
    """Facts per user; read only through a scope."""

    def __init__(self, store: Store) -> None:
        self.store = store

    async def add(self, message: Message, facts: list[Fact], turn_id: int | None) -> None:
        if not facts:
            return
        where = self.store.where_said(message)
        now = time.time()
        async with self.store.transaction() as db:
            await db.executemany(
                "INSERT INTO facts (turn_id, platform, workspace, channel, thread, private,"
                " user_key, key, value, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [(turn_id, *where, f.key, self.store.seal(f.value), now) for f in facts],
            )

    async def about(self, scope: Scope, user_key: str) -> list[StoredFact]:
        """What ``user_key`` stated about themself, as far as ``scope`` may see."""
        where, params = scope.where()
        rows = await self.store.rows(
            f"SELECT id, key, value, private, created_at FROM facts WHERE {where}"
            " AND user_key = ? ORDER BY id",
            (*params, user_key),
        )
        open_ = self.store.privacy.cipher.open
        return [StoredFact(r[0], r[1], open_(r[2]), bool(r[3]), r[4]) for r in rows]


def describe(facts: list[StoredFact]) -> list[str]:
    """Lines for the fact's owner, oldest first; single-valued keys show their latest value."""
    latest = {f.key: f for f in facts if f.key in SINGLE_VALUED}
    templates = {key: template for key, _, template in PATTERNS}
    lines: list[str] = []
    for fact in facts:
        if fact.key in SINGLE_VALUED and latest[fact.key] is not fact:
            continue
        line = templates[fact.key].format(fact.value)
        if line not in lines:
            lines.append(line)
    return lines
