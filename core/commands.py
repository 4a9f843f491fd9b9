"""Built-in commands, answered in the route stage on every platform alike.

Plugins (a later part of the project) add their own through the same table.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from core.pipeline import Turn

_COMMAND = re.compile(r"^/([A-Za-z][\w-]{0,31})(?:@\S+)?(?:\s+(.*))?$", re.DOTALL)


def parse(text: str) -> tuple[str, str] | None:
    """``"/name args"`` -> ``("name", "args")``; Telegram's ``/name@botname`` too."""
    match = _COMMAND.match(text.strip())
    if match is None:
        return None
    return match.group(1).lower(), (match.group(2) or "").strip()


@dataclass(frozen=True, slots=True)
class Command:
    name: str
    usage: str
    help: str
    handler: Callable[[Turn, str], Awaitable[str]]


async def _help(turn: Turn, args: str) -> str:
    lines = [f"I'm {turn.bot.profile.name}. Talk to me in plain words, or use a command:"]
    lines += [f"  {c.usage} - {c.help}" for c in BUILTIN.values()]
    return "\n".join(lines)


async def _reset(turn: Turn, args: str) -> str:
    await turn.bot.store.reset(turn.bot.profile.name, turn.message)
    return "Starting fresh: I won't use our earlier messages here as context from now on."


BUILTIN: dict[str, Command] = {
    c.name: c
    for c in (
        Command("help", "/help", "what I can do", _help),
        Command("reset", "/reset", "start this conversation afresh", _reset),
    )
}
