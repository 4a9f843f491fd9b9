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
import logging
import re
from collections.abc import Awaitable, Callable, Sequence
from datetime import time as clock_time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, TypeAlias

from pydantic import BaseModel

from core.commands import (
    Command,
    CommandTable,
    Param,
    Permission,
    Rest,
    Suggest,
    UsageError,
    command,
    parse_rate,
)
from core.people.rights import DataServices, PersonalData
from core.plugins.storage import PluginStorage
from core.turn import Turn
from core.types import ChatMessage, Message, Place, Reply, Role

if TYPE_CHECKING:
    from core.emotion.labels import Reading
    from core.generation.base import Generator
    from core.memory.longterm import Vectors
    from core.settings import Settings

__all__ = [
    "STOP",
    "Command",
    "Context",
    "JobContext",
    "Matcher",
    "Param",
    "Permission",
    "Plugin",
    "PluginServices",
    "Rest",
    "UsageError",
    "matchers",
    "parse_rate",
]

log = logging.getLogger(__name__)


class Outcome(enum.Enum):
    STOP = "stop"
    """End the turn without an answer (the model is not asked)."""


STOP = Outcome.STOP


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
        data_right: bool = False,
        rate: str | None = None,
        suggest: Suggest | None = None,
    ) -> Callable[[Callable[..., Awaitable[Any]]], Callable[..., Awaitable[Any]]]:
        """Declare ``/name``; arguments come from the function's annotations.

        ``admin``: only the bot's admins may use it. ``data_right``: a person's right
        over their own data, answered for everyone (no allow or block list refuses it).
        ``suggest``: given an argument's name, values to offer as it is typed (Discord's
        autocompletion); an argument called ``command`` is offered the commands' names.
        """
        if admin and data_right:
            raise ValueError("a command is for admins or a data right, not both")
        permission = (
            Permission.ADMIN
            if admin
            else Permission.DATA_RIGHT
            if data_right
            else Permission.EVERYONE
        )

        def register(func: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
            self.commands.append(
                command(
                    func,
                    name=name,
                    help=help,
                    permission=permission,
                    rate=rate,
                    owner=self.name,
                    suggest=suggest,
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
class PluginServices(DataServices, Protocol):
    """What the plugin contexts use of the bot (:class:`core.bot.Bot` is one). Plugins
    never see it: they get :class:`JobContext` and :class:`Context`."""

    settings: Settings
    generator: Generator
    commands: CommandTable

    async def send_to(self, place: Place, text: str) -> bool: ...


class JobContext:
    """What setup, teardown and scheduled jobs get: the plugin's settings, its storage,
    the language model, and a way to say things unprompted."""

    def __init__(
        self, services: PluginServices, plugin: Plugin, settings: Any, state: dict[str, Any]
    ) -> None:
        self._services = services
        self.plugin = plugin
        self.settings = settings
        """The plugin's settings (its pydantic model), from ``[plugin.NAME]``."""
        self.state = state
        """A dict the plugin may keep things in while it runs (not persisted)."""

    @property
    def bot_name(self) -> str:
        """The bot profile's name."""
        return self._services.profile.name

    @property
    def profile_folder(self) -> Path:
        """The bot profile's folder (where its own files, such as documents, are)."""
        return self._services.profile.folder or Path(".")

    @property
    def bots_dir(self) -> Path:
        """Where the bot profiles are (``SOCIALBOT_BOTS_DIR``)."""
        return self._services.settings.bots_dir

    @property
    def storage(self) -> PluginStorage:
        """System-level access to the plugin's stored entries (every user's)."""
        return PluginStorage(self._services.store, self.plugin.name)

    async def send_to(self, place: Place, text: str) -> bool:
        """Say something in ``place`` without being asked (needs that platform running)."""
        return await self._services.send_to(place, text)

    async def ask(self, prompt: str, *, system: str = "") -> str:
        """One answer from the bot's language model."""
        messages = [ChatMessage(Role.SYSTEM, system)] if system else []
        messages.append(ChatMessage(Role.USER, prompt))
        services = self._services
        generation = services.profile.generation
        pieces = [p async for p in services.generator.stream(messages, generation)]
        return "".join(pieces).strip()

    @property
    def can_embed(self) -> bool:
        """Whether the embedding model runs (the profile's ``[memory]`` is on)."""
        return self._services.memory is not None

    async def embed(self, texts: Sequence[str]) -> Vectors:
        """Unit vectors of ``texts`` from the bot's embedding model (see :attr:`can_embed`)."""
        memory = self._services.memory
        if memory is None:
            raise RuntimeError("the embedding model is off: enable [memory] in the profile")
        return await memory.embedder.embed(texts)


class Context(JobContext):
    """What a command or message hook gets: the message, where it came from, and what
    may be read and kept for its speaker."""

    def __init__(
        self,
        services: PluginServices,
        plugin: Plugin,
        settings: Any,
        state: dict[str, Any],
        turn: Turn,
    ) -> None:
        super().__init__(services, plugin, settings, state)
        self._turn = turn
        self.match: re.Match[str] | None = None
        self.args = ""

    @property
    def message(self) -> Message:
        return self._turn.message

    @property
    def text(self) -> str:
        return self._turn.text or self._turn.message.text

    @property
    def place(self) -> Place:
        return self._turn.message.place

    @property
    def user_key(self) -> str:
        """The speaker's pseudonymous id (what storage keys their data by)."""
        return self._turn.user_key

    @property
    def emotion(self) -> Reading | None:
        return self._turn.emotion

    @property
    def vector(self) -> Vectors | None:
        """The message's embedding (when long-term memory is on)."""
        return self._turn.vector

    @property
    def keeps(self) -> bool:
        """False while the speaker has opted out: keep nothing of theirs."""
        return self._turn.keep

    @property
    def is_admin(self) -> bool:
        return self._services.access.is_admin(self.message.speaker)

    @property
    def commands(self) -> list[Command]:
        """The commands the speaker may use (admin ones for admins), by name."""
        return self._services.commands.visible(admin=self.is_admin)

    def _storage(self, user_key: str) -> PluginStorage:
        assert self._turn.scope is not None
        return PluginStorage(
            self._services.store,
            self.plugin.name,
            scope=self._turn.scope,
            message=self.message,
            user_key=user_key,
        )

    @property
    def storage(self) -> PluginStorage:
        """The speaker's entries, read within this turn's privacy scope; covered by
        /export and /forget."""
        return self._storage(self._turn.user_key)

    @property
    def channel_storage(self) -> PluginStorage:
        """Entries of this place itself (a channel's settings), not of a person."""
        return self._storage("")

    @property
    def personal_data(self) -> PersonalData:
        """Everything the bot keeps about the speaker, in their own scope (data rights)."""
        assert self._turn.scope is not None
        return PersonalData(self._services, self.message, self._turn.scope, self.user_key)

    async def recall(self, query: str, *, k: int = 5) -> list[str]:
        """Long-term memories relevant to ``query``, as far as this place may see (the
        speaker's scope): the same search the model's context uses."""
        memory, scope = self._services.memory, self._turn.scope
        if memory is None or scope is None:
            return []
        vector = (await memory.embedder.embed([query]))[0]
        return [m.text for m in await memory.search(scope, vector, k=k)]

    async def reply(self, text: str) -> None:
        """Answer now, where the message came from (a hook can answer and go on)."""
        await self._turn.channel.send(Reply(text, self.place, self.message.id))

    async def react(self, emoji: str) -> None:
        """React to the message with ``emoji``, where the platform has reactions."""
        react = getattr(self._turn.channel, "react", None)
        if react is not None:
            await react(emoji)

    async def whisper(self, text: str) -> None:
        """Tell only the speaker (a DM, or a message only they see, where possible)."""
        whisper = getattr(self._turn.channel, "whisper", None)
        if whisper is not None:
            await whisper(text)
        else:
            await self.reply(text)

    def persona(self, text: str) -> None:
        """Use this persona (system prompt) for this turn's answer."""
        self._turn.persona = text

    def note(self, text: str) -> None:
        """Give the model this (reference material, an instruction) for this turn."""
        self._turn.notes.append(text)


HandlerResult = str | Outcome | None
Handlers = Sequence[Hook]
