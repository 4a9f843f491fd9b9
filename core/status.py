"""``/status`` for admins: what the bot runs, how long it has been up, what it has done
since, and what it holds. Counts are of this process's turns (nothing is stored for
them); the outcome of each turn is tallied by the pipeline."""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path
from typing import Protocol

import psutil

from core.settings import BotProfile


class Observed(Protocol):
    """What ``/status`` describes (:class:`core.bot.Bot` is one)."""

    profile: BotProfile
    outcomes: Counter[str]
    started: float
    """When the bot started (``time.monotonic()``)."""

    @property
    def engine(self) -> str: ...

    @property
    def reads_emotions(self) -> bool: ...

    @property
    def remembers(self) -> bool:
        """Whether long-term memory is on."""
        ...

    @property
    def platforms(self) -> list[str]: ...

    @property
    def busy_conversations(self) -> int: ...

    @property
    def database_files(self) -> list[Path]: ...

    @property
    def plugin_names(self) -> list[str]: ...


OUTCOMES = {
    "model": "replies from the model",
    "model_failed": "of them apologies (the model failed or was busy)",
    "command": "answered by commands and plugins",
    "refused": "refused with a reason (too long, not allowed)",
    "unanswered": "not answered (not meant for me, empty, blocked, stopped by a plugin)",
    "error": "errors (logged)",
}


def describe(bot: Observed) -> str:
    counts = bot.outcomes
    model = bot.profile.model
    lines = [
        f"Profile {bot.profile.name}, up {_duration(time.monotonic() - bot.started)}.",
        f"Model: {model.model} on {bot.engine}; emotion reading "
        f"{'on' if bot.reads_emotions else 'off'}; long-term memory "
        f"{'on' if bot.remembers else 'off'}.",
        f"Platforms: {', '.join(sorted(bot.platforms)) or 'none connected'}.",
        _groups(bot),
        "Since start: "
        + "; ".join(f"{counts[key]:,} {label}" for key, label in OUTCOMES.items() if key in counts)
        + ("." if counts else "nothing yet."),
        f"Now: {_count(bot.busy_conversations, 'conversation')} in progress, this one included.",
        f"Memory: {psutil.Process().memory_info().rss / 2**20:,.0f} MiB; database {_size(bot)}.",
        f"Plugins running: {', '.join(sorted(bot.plugin_names)) or 'none'}.",
    ]
    return "\n".join(lines)


def _groups(bot: Observed) -> str:
    groups = bot.profile.groups
    when = {
        "mention": "when mentioned, replied to or given a command",
        "keyword": "when mentioned, replied to, given a command or called by a keyword",
        "always": "every message",
    }[groups.answer]
    kept = (
        "each member has their own conversation"
        if groups.context == "person"
        else "one conversation per channel or thread"
    )
    return f"In groups: answers {when}; {kept}."


def _count(n: int, noun: str) -> str:
    return f"{n:,} {noun}{'' if n == 1 else 's'}"


def _size(bot: Observed) -> str:
    total = sum(f.stat().st_size for f in bot.database_files if f.exists())
    return f"{total / 2**20:,.1f} MiB"


def _duration(seconds: float) -> str:
    minutes = int(seconds // 60)
    if minutes < 1:
        return f"{int(seconds)} s"
    hours, minutes = divmod(minutes, 60)
    days, hours = divmod(hours, 24)
    parts = [f"{days} d" if days else "", f"{hours} h" if hours else "", f"{minutes} min"]
    return " ".join(p for p in parts if p)
