"""The plugin API: commands, message hooks, scheduled jobs, setup and teardown.

A plugin is a module that exports ``plugin = Plugin("name")`` and decorates plain
async functions with it::

    from core.plugins import Context, Plugin, Rest, matchers as m

    plugin = Plugin("greeter", description="Says hello back.")

    @plugin.command(help="greet someone")
    async def greet(ctx: Context, name: str, times: int = 1) -> str:
        return " ".join([f"Hello, {name}!"] * times)

    @plugin.on_message(m.keyword("thanks") & m.group_only())
    async def thanked(ctx: Context) -> str:
        return "You're welcome!"

Command arguments are parsed from the annotations (``str``, ``int``, ``float``,
``bool``, ``Literal[...]``, optional ones with a default, and :class:`Rest` for the
rest of the line); a wrong argument gets the user the generated usage line. A hook
returns a string to answer (the turn ends there), :data:`STOP` to end the turn
without an answer, or ``None`` to let it go on (to other hooks, then the model).

The same plugin works unchanged on every platform: the context knows where to
answer. Plugins are isolated: an exception is logged and answered with a short
apology, a plugin that takes longer than ``SOCIALBOT_PLUGIN_TIMEOUT_S`` is cut off,
and neither affects other plugins or other users.
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
from collections.abc import Awaitable, Callable, Sequence
from datetime import time as clock_time
from typing import TYPE_CHECKING, Any, Literal, TypeAlias, Union, get_args, get_origin

from pydantic import BaseModel

from core.types import Message, Place, Reply

if TYPE_CHECKING:
    from core.bot import Bot
    from core.emotion.labels import Reading
    from core.pipeline import Turn
    from core.plugin_storage import PluginStorage

log = logging.getLogger(__name__)


class Outcome(enum.Enum):
    STOP = "stop"
    """End the turn without an answer (the model is not asked)."""


STOP = Outcome.STOP


class Rest(str):
    """Annotate the last command argument with this to receive the rest of the line."""

    __slots__ = ()


class UsageError(ValueError):
    """Arguments that do not fit the command; the user gets the usage line."""


# --- matchers ----------------------------------------------------------------------------
class Matcher:
    """A test on a message context; combine with ``&``, ``|`` and ``~``."""

    def __init__(self, test: Callable[[Context], bool], description: str) -> None:
        self.test = test
        self.description = description

    def __call__(self, ctx: Context) -> bool:
        return self.test(ctx)

    def __and__(self, other: Matcher) -> Matcher:
        return Matcher(lambda c: self(c) and other(c), f"({self} and {other})")

    def __or__(self, other: Matcher) -> Matcher:
        return Matcher(lambda c: self(c) or other(c), f"({self} or {other})")

    def __invert__(self) -> Matcher:
        return Matcher(lambda c: not self(c), f"not {self}")

    def __str__(self) -> str:
        return self.description


class matchers:
    """Ready-made matchers."""

    @staticmethod
    def always() -> Matcher:
        return Matcher(lambda c: True, "always")

    @staticmethod
    def regex(pattern: str, flags: int = re.IGNORECASE) -> Matcher:
        """The text matches ``pattern`` (searched); the match is in ``ctx.match``."""
        compiled = re.compile(pattern, flags)

        def test(ctx: Context) -> bool:
            found = compiled.search(ctx.text)
            if found is not None:
                ctx.match = found
            return found is not None

        return Matcher(test, f"regex {pattern!r}")

    @staticmethod
    def keyword(*words: str) -> Matcher:
        """One of ``words`` is said, as a whole word, in any case."""
        pattern = re.compile(
            r"(?<!\w)(?:" + "|".join(re.escape(w) for w in words) + r")(?!\w)", re.IGNORECASE
        )
        return Matcher(lambda c: pattern.search(c.text) is not None, f"keyword {words}")

    @staticmethod
    def dm_only() -> Matcher:
        return Matcher(lambda c: c.place.is_private, "in a direct message")

    @staticmethod
    def group_only() -> Matcher:
        return Matcher(lambda c: not c.place.is_private, "in a group")

    @staticmethod
    def mentioned() -> Matcher:
        return Matcher(lambda c: c.message.mentions_bot, "mentioning the bot")

    @staticmethod
    def emotion(*names: str, at_least: float = 0.0) -> Matcher:
        """The message reads as one of ``names``: GoEmotions labels or Ekman groups."""
        wanted = set(names)

        def test(ctx: Context) -> bool:
            reading = ctx.emotion
            if reading is None:
                return False
            if reading.ekman in wanted:
                return True
            return any(
                name in wanted and reading.labels.get(name, 0.0) >= at_least
                for name in reading.predicted
            )

        return Matcher(test, f"emotion {names}")


# --- declarations ------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True, slots=True)
class Param:
    name: str
    kind: Any
    default: Any = inspect.Parameter.empty
    rest: bool = False

    @property
    def required(self) -> bool:
        return self.default is inspect.Parameter.empty

    def usage(self) -> str:
        choices = get_args(self.kind) if get_origin(self.kind) is Literal else ()
        shown = "|".join(str(c) for c in choices) if choices else self.name
        shown += "..." if self.rest else ""
        return f"<{shown}>" if self.required else f"[{shown}]"

    def convert(self, raw: str) -> Any:
        kind = self.kind
        if get_origin(kind) is Literal:
            for choice in get_args(kind):
                if str(choice).lower() == raw.lower():
                    return choice
            raise UsageError(f"{self.name} must be one of {', '.join(map(str, get_args(kind)))}")
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


@dataclasses.dataclass(slots=True)
class Command:
    name: str
    func: Callable[..., Awaitable[Any]]
    help: str
    params: tuple[Param, ...]
    admin: bool = False
    rate: tuple[int, float] | None = None
    plugin: str = ""

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


@dataclasses.dataclass(slots=True)
class Hook:
    func: Callable[[Context], Awaitable[Any]]
    matcher: Matcher
    priority: int
    plugin: str = ""


JobFunction: TypeAlias = "Callable[[JobContext], Awaitable[Any]]"
"""A job, setup or teardown: an async function of the job's context."""


@dataclasses.dataclass(slots=True)
class Job:
    func: JobFunction
    every: float | None = None
    at: clock_time | None = None
    plugin: str = ""


def parse_rate(rate: str) -> tuple[int, float]:
    """``"3/minute"`` -> (3, 60.0)."""
    match = re.fullmatch(r"\s*(\d+)\s*/\s*(second|minute|hour|day)\s*", rate)
    if match is None:
        raise ValueError(f"rate must look like '3/minute', not {rate!r}")
    seconds = {"second": 1.0, "minute": 60.0, "hour": 3600.0, "day": 86400.0}[match.group(2)]
    return int(match.group(1)), seconds


def _params(func: Callable[..., Any]) -> tuple[Param, ...]:
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


class Plugin:
    """What a plugin module exports. See the module's documentation."""

    def __init__(
        self,
        name: str,
        *,
        description: str = "",
        settings: type[BaseModel] | None = None,
    ) -> None:
        if not re.fullmatch(r"[a-z][a-z0-9_-]{0,31}", name):
            raise ValueError(f"plugin name {name!r}: lowercase letters, digits, - and _")
        self.name = name
        self.description = description
        self.settings_model = settings
        self.commands: list[Command] = []
        self.hooks: list[Hook] = []
        self.jobs: list[Job] = []
        self.setups: list[JobFunction] = []
        self.teardowns: list[JobFunction] = []

    def command(
        self,
        name: str | None = None,
        *,
        help: str = "",
        admin: bool = False,
        rate: str | None = None,
    ) -> Callable[[Callable[..., Awaitable[Any]]], Callable[..., Awaitable[Any]]]:
        """Declare ``/name``; arguments come from the function's annotations."""

        def register(func: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
            command_name = (name or func.__name__).lower()
            text = help or (inspect.getdoc(func) or "").split("\n")[0]
            self.commands.append(
                Command(
                    command_name,
                    func,
                    text,
                    _params(func),
                    admin=admin,
                    rate=parse_rate(rate) if rate else None,
                    plugin=self.name,
                )
            )
            return func

        return register

    def on_message(
        self, matcher: Matcher | None = None, *, priority: int = 0
    ) -> Callable[[Callable[[Context], Awaitable[Any]]], Callable[[Context], Awaitable[Any]]]:
        """Run for each message (not commands) that ``matcher`` accepts, highest priority
        first."""

        def register(
            func: Callable[[Context], Awaitable[Any]],
        ) -> Callable[[Context], Awaitable[Any]]:
            self.hooks.append(Hook(func, matcher or matchers.always(), priority, self.name))
            return func

        return register

    def every(
        self, *, seconds: float = 0, minutes: float = 0, hours: float = 0
    ) -> Callable[[JobFunction], JobFunction]:
        """Run the function repeatedly, this long apart."""
        interval = seconds + 60 * minutes + 3600 * hours
        if interval <= 0:
            raise ValueError("every() needs a positive interval")
        return self._job(every=interval)

    def at(self, when: str) -> Callable[[JobFunction], JobFunction]:
        """Run the function every day at ``"HH:MM"`` (UTC)."""
        return self._job(at=clock_time.fromisoformat(when))

    def _job(self, **when: Any) -> Callable[[JobFunction], JobFunction]:
        def register(func: JobFunction) -> JobFunction:
            self.jobs.append(Job(func, plugin=self.name, **when))
            return func

        return register

    def setup(self, func: JobFunction) -> JobFunction:
        """Run when the plugin starts (the bot starts, or the plugin is enabled/reloaded)."""
        self.setups.append(func)
        return func

    def teardown(self, func: JobFunction) -> JobFunction:
        """Run when the plugin stops."""
        self.teardowns.append(func)
        return func


# --- what handlers are given ---------------------------------------------------------------
class JobContext:
    """What setup, teardown and scheduled jobs get: the bot, settings, storage, a way to
    send messages."""

    def __init__(self, bot: Bot, plugin: Plugin, settings: Any, state: dict[str, Any]) -> None:
        self.bot = bot
        self.plugin = plugin
        self.settings = settings
        self.state = state
        """A dict the plugin may keep things in while it runs (not persisted)."""

    @property
    def generator(self) -> Any:
        return self.bot.generator

    @property
    def storage(self) -> PluginStorage:
        """System-level access to the plugin's stored entries (every user's)."""
        from core.plugin_storage import PluginStorage

        return PluginStorage(self.bot.store, self.plugin.name)

    async def send_to(self, place: Place, text: str) -> bool:
        """Say something in ``place`` without being asked (needs that platform running)."""
        return await self.bot.send_to(place, text)

    async def ask(self, prompt: str, *, system: str = "") -> str:
        """One answer from the bot's language model."""
        from core.types import ChatMessage, Role

        messages = [ChatMessage(Role.SYSTEM, system)] if system else []
        messages.append(ChatMessage(Role.USER, prompt))
        pieces = [p async for p in self.bot.generator.stream(messages, self.bot.profile.generation)]
        return "".join(pieces).strip()


class Context(JobContext):
    """What a command or message hook gets."""

    def __init__(
        self, bot: Bot, plugin: Plugin, settings: Any, state: dict[str, Any], turn: Turn
    ) -> None:
        super().__init__(bot, plugin, settings, state)
        self.turn = turn
        self.match: re.Match[str] | None = None
        self.args = ""

    @property
    def message(self) -> Message:
        return self.turn.message

    @property
    def text(self) -> str:
        return self.turn.text or self.turn.message.text

    @property
    def place(self) -> Place:
        return self.turn.message.place

    @property
    def user_key(self) -> str:
        """The speaker's pseudonymous id (what storage keys their data by)."""
        return self.turn.user_key

    @property
    def emotion(self) -> Reading | None:
        return self.turn.emotion

    @property
    def is_admin(self) -> bool:
        return self.bot.is_admin(self.message.speaker)

    @property
    def storage(self) -> PluginStorage:
        """The speaker's entries, read within this turn's privacy scope; covered by
        /export and /forget."""
        from core.plugin_storage import PluginStorage

        assert self.turn.scope is not None
        return PluginStorage(
            self.bot.store,
            self.plugin.name,
            scope=self.turn.scope,
            message=self.message,
            user_key=self.turn.user_key,
        )

    @property
    def channel_storage(self) -> PluginStorage:
        """Entries of this place itself (a channel's settings), not of a person."""
        from core.plugin_storage import PluginStorage

        assert self.turn.scope is not None
        return PluginStorage(
            self.bot.store,
            self.plugin.name,
            scope=self.turn.scope,
            message=self.message,
            user_key="",
        )

    async def reply(self, text: str) -> None:
        """Answer now, where the message came from (a hook can answer and go on)."""
        await self.turn.channel.send(Reply(text, self.place, self.message.id))

    async def react(self, emoji: str) -> None:
        """React to the message with ``emoji``, where the platform has reactions."""
        react = getattr(self.turn.channel, "react", None)
        if react is not None:
            await react(emoji)

    async def whisper(self, text: str) -> None:
        """Tell only the speaker (a DM, or a message only they see, where possible)."""
        whisper = getattr(self.turn.channel, "whisper", None)
        if whisper is not None:
            await whisper(text)
        else:
            await self.reply(text)

    def persona(self, text: str) -> None:
        """Use this persona (system prompt) for this turn's answer."""
        self.turn.persona = text

    def note(self, text: str) -> None:
        """Give the model this (reference material, an instruction) for this turn."""
        self.turn.notes.append(text)


HandlerResult = str | Outcome | None
Handlers = Sequence[Hook]
