"""Commands: ``/name args`` on every platform, and the one table of all of them.

Every command the bot answers is a :class:`Command` in the bot's :class:`CommandTable`:
the core's admin commands (``/status``, ``/block``, ``/plugins``...), the data rights
(``/privacy``, ``/export``, ``/forget``...) and each plugin's. Each has an owner, a
:class:`Permission` and a usage line generated from its handler's annotations. The
router answers from the table; ``/help``, Telegram's command menu and Slack's slash
command read it; the guard asks it which commands no allow or block list may refuse.
"""

from __future__ import annotations

import dataclasses
import enum
import inspect
import logging
import re
import shlex
import types
import typing
from collections.abc import Awaitable, Callable, Iterable, Iterator
from typing import Any, Literal, Protocol, Union, get_args, get_origin

from core.types import Message

log = logging.getLogger(__name__)

_COMMAND = re.compile(r"^/([A-Za-z][\w-]{0,31})(?:@\S+)?(?:\s+(.*))?$", re.DOTALL)


def parse(text: str) -> tuple[str, str] | None:
    """``"/name args"`` -> ``("name", "args")``; Telegram's ``/name@botname`` too."""
    match = _COMMAND.match(text.strip())
    if match is None:
        return None
    return match.group(1).lower(), (match.group(2) or "").strip()


class Caller(Protocol):
    """What every command handler is given first, at the least: the message that asked
    (plugins' handlers get the fuller :class:`core.plugins.Context`)."""

    @property
    def message(self) -> Message: ...


class Permission(enum.StrEnum):
    EVERYONE = "everyone"
    ADMIN = "admin"
    """Only the bot's admins (``SOCIALBOT_ADMINS``; the terminal's user)."""
    DATA_RIGHT = "data right"
    """Everyone, and never refused: blocked people and people not on an allow list too."""


class Rest(str):
    """Annotate the last command argument with this to receive the rest of the line."""

    __slots__ = ()


class UsageError(ValueError):
    """Arguments that do not fit the command; the user gets the usage line."""


@dataclasses.dataclass(frozen=True, slots=True)
class Param:
    name: str
    kind: Any
    default: Any = inspect.Parameter.empty
    rest: bool = False

    @property
    def required(self) -> bool:
        return self.default is inspect.Parameter.empty

    @property
    def choices(self) -> tuple[Any, ...]:
        """The allowed values of a ``Literal[...]`` argument (empty for any other)."""
        return get_args(self.kind) if get_origin(self.kind) is Literal else ()

    def usage(self) -> str:
        shown = "|".join(str(c) for c in self.choices) if self.choices else self.name
        shown += "..." if self.rest else ""
        return f"<{shown}>" if self.required else f"[{shown}]"

    def convert(self, raw: str) -> Any:
        kind = self.kind
        if self.choices:
            for choice in self.choices:
                if str(choice).lower() == raw.lower():
                    return choice
            raise UsageError(f"{self.name} must be one of {', '.join(map(str, self.choices))}")
        if kind is bool:
            lowered = raw.lower()
            if lowered in ("yes", "y", "true", "on", "1"):
                return True
            if lowered in ("no", "n", "false", "off", "0"):
                return False
            raise UsageError(f"{self.name} must be yes or no")
        if kind in (int, float):
            try:
                return kind(raw)
            except ValueError:
                whole = "whole " if kind is int else ""
                raise UsageError(f"{self.name} must be a {whole}number") from None
        return raw


Suggest = Callable[[str], Iterable[str]]
"""Given an argument's name, the values worth offering for it (may be empty)."""


@dataclasses.dataclass(slots=True)
class Command:
    """``/name``: its handler (``async def f(ctx, **arguments)``), who may use it, whose."""

    name: str
    func: Callable[..., Awaitable[Any]]
    help: str
    params: tuple[Param, ...]
    permission: Permission = Permission.EVERYONE
    rate: tuple[int, float] | None = None
    owner: str = ""
    """The plugin that declared it, or ``core``."""
    suggest: Suggest | None = None
    """Values to offer for an argument as it is typed (platforms with autocompletion)."""

    @property
    def admin(self) -> bool:
        return self.permission is Permission.ADMIN

    @property
    def usage(self) -> str:
        return " ".join([f"/{self.name}", *(p.usage() for p in self.params)])

    def parse(self, line: str) -> dict[str, Any]:
        """The keyword arguments for ``line`` (what follows the command name)."""
        try:
            words = shlex.split(line)
        except ValueError:
            words = line.split()
        values: dict[str, Any] = {}
        for index, param in enumerate(self.params):
            if param.rest:
                rest = _rest_of(line, index)
                if not rest and param.required:
                    raise UsageError(f"{param.name} is missing")
                values[param.name] = rest if rest else param.default
                return values
            if index >= len(words):
                if param.required:
                    raise UsageError(f"{param.name} is missing")
                values[param.name] = param.default
                continue
            values[param.name] = param.convert(words[index])
        if len(words) > len(self.params):
            raise UsageError("too many arguments")
        return values


def _rest_of(line: str, skip: int) -> str:
    """``line`` without its first ``skip`` words, spacing kept."""
    rest = line.strip()
    for _ in range(skip):
        parts = rest.split(None, 1)
        rest = parts[1] if len(parts) > 1 else ""
    return rest.strip()


def params_of(func: Callable[..., Any]) -> tuple[Param, ...]:
    """A handler's arguments after the context, from its annotations."""
    hints = typing.get_type_hints(func)
    found: list[Param] = []
    parameters = list(inspect.signature(func).parameters.values())[1:]  # after ctx
    for index, parameter in enumerate(parameters):
        kind = hints.get(parameter.name, str)
        origin = get_origin(kind)
        if origin in (Union, types.UnionType):  # Optional[X] / X | None
            options = [a for a in get_args(kind) if a is not type(None)]
            kind = options[0] if len(options) == 1 else str
        rest = kind is Rest
        if rest and index != len(parameters) - 1:
            raise TypeError(f"{func.__name__}: only the last argument can be Rest")
        if not rest and kind not in (str, int, float, bool) and get_origin(kind) is not Literal:
            raise TypeError(f"{func.__name__}: argument {parameter.name} has type {kind!r}")
        found.append(Param(parameter.name, str if rest else kind, parameter.default, rest))
    return tuple(found)


def parse_rate(rate: str) -> tuple[int, float]:
    """``"3/minute"`` -> (3, 60.0)."""
    match = re.fullmatch(r"\s*(\d+)\s*/\s*(second|minute|hour|day)\s*", rate)
    if match is None:
        raise ValueError(f"rate must look like '3/minute', not {rate!r}")
    seconds = {"second": 1.0, "minute": 60.0, "hour": 3600.0, "day": 86400.0}[match.group(2)]
    return int(match.group(1)), seconds


def command(
    func: Callable[..., Awaitable[Any]],
    *,
    name: str | None = None,
    help: str = "",
    permission: Permission = Permission.EVERYONE,
    rate: str | None = None,
    owner: str = "",
    suggest: Suggest | None = None,
) -> Command:
    """A :class:`Command` for ``func``, its usage from the annotations, its help from the
    docstring's first line unless given."""
    return Command(
        (name or func.__name__.rstrip("_")).lower(),
        func,
        help or (inspect.getdoc(func) or "").split("\n")[0],
        params_of(func),
        permission,
        parse_rate(rate) if rate else None,
        owner,
        suggest,
    )


class CommandTable:
    """Every command the bot answers, by name. The first to claim a name keeps it: the
    core registers its own before any plugin starts."""

    def __init__(self) -> None:
        self._by_name: dict[str, Command] = {}
        self._watchers: list[Callable[[], None]] = []

    def watch(self, changed: Callable[[], None]) -> None:
        """Call ``changed()`` whenever a command comes or goes (a plugin enabled or
        disabled): a platform that registers the commands with its servers does it again."""
        self._watchers.append(changed)

    def _changed(self) -> None:
        for changed in self._watchers:
            try:
                changed()
            except Exception:
                log.exception("a command table watcher failed")

    def add(self, command: Command) -> bool:
        """Register ``command``; False (and a warning) when its name is taken."""
        taken = self._by_name.get(command.name)
        if taken is not None and taken is not command:
            if taken.owner == "core":
                log.warning(
                    "plugin %s: /%s is the core's own command; the plugin's is never run",
                    command.owner,
                    command.name,
                )
            else:
                log.warning(
                    "plugin %s: /%s is also plugin %s's, which answers it (loaded first)",
                    command.owner,
                    command.name,
                    taken.owner,
                )
            return False
        self._by_name[command.name] = command
        if taken is None:
            self._changed()
        return True

    def remove_owner(self, owner: str) -> None:
        """Forget ``owner``'s commands (a plugin stopped)."""
        gone = [n for n, c in self._by_name.items() if c.owner == owner]
        for name in gone:
            del self._by_name[name]
        if gone:
            self._changed()

    def get(self, name: str) -> Command | None:
        return self._by_name.get(name)

    def is_data_right(self, text: str) -> bool:
        """``text`` is a command that no allow or block list may refuse."""
        parsed = parse(text)
        found = self._by_name.get(parsed[0]) if parsed is not None else None
        return found is not None and found.permission is Permission.DATA_RIGHT

    def suggestions(self, name: str, param: str, typed: str, *, most: int = 25) -> list[str]:
        """What to offer for ``/name``'s argument ``param`` as ``typed`` so far: the
        command's own suggestions, or for an argument called ``command`` the commands'
        names; those starting with what was typed first, then those containing it."""
        found = self._by_name.get(name)
        if found is None:
            return []
        if found.suggest is not None:
            offered = [str(v) for v in found.suggest(param)]
        elif param == "command":
            offered = [c.name for c in self if not c.admin]
        else:
            offered = []
        typed = typed.strip().lstrip("/").lower()
        first = [v for v in offered if v.lower().startswith(typed)]
        rest = [v for v in offered if typed in v.lower() and v not in first]
        return (first + rest)[:most]

    def visible(self, *, admin: bool) -> list[Command]:
        """The commands a person may use, by name (admin ones only for admins)."""
        return sorted(
            (c for c in self._by_name.values() if admin or not c.admin), key=lambda c: c.name
        )

    def __iter__(self) -> Iterator[Command]:
        return iter(sorted(self._by_name.values(), key=lambda c: c.name))

    def __len__(self) -> int:
        return len(self._by_name)
