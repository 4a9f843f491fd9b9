"""What the Discord, Telegram and Slack adapters share.

- :func:`split_text`: long replies become several messages, cut at paragraph or
  sentence boundaries and never inside a code block;
- :class:`RecentIds`: remembers recently seen event ids, so a redelivered event is
  answered once;
- :class:`EditingChannel`: a :class:`~core.channel.ReplyChannel` that keeps a typing
  indicator alive, streams the reply by editing one message no faster than the
  platform allows, and posts the finished reply in as many parts as it needs;
- :class:`BotCore`: what an adapter drives (``core.bot.Bot`` is one);
- :class:`PlatformAdapter`: connect, take events in, say things unprompted, stop taking
  events in, close. The whole platform contract is here: nothing else of the core is
  an adapter's business.
"""

from __future__ import annotations

import abc
import asyncio
import logging
import re
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Coroutine
from typing import TYPE_CHECKING, Any, Generic, Protocol, TypeVar

from aiohttp import web

from core.types import Message, Place, Reply

if TYPE_CHECKING:
    from core.channel import ReplyChannel
    from core.commands import CommandTable
    from core.settings import Settings
    from core.storage.inbox import Shown
    from core.storage.store import StoredTurn
    from core.turn import TurnResult

Record = Callable[[str, str], Awaitable[None]]
"""Keeps the platform's id of a streamed reply's message and the text it shows."""

log = logging.getLogger(__name__)

_FENCE = re.compile(r"```[^\s`]*")
_SENTENCE = re.compile(r"[.!?…][\"')\]]*\s")


def _code_spans(text: str) -> list[tuple[int, int, str]]:
    """(start, end, opening fence line) of each fenced code block; an unclosed one runs
    to the end of the text."""
    spans: list[tuple[int, int, str]] = []
    fences = list(_FENCE.finditer(text))
    for i in range(0, len(fences), 2):
        opening = fences[i]
        end = fences[i + 1].end() if i + 1 < len(fences) else len(text)
        spans.append((opening.start(), end, opening.group()))
    return spans


def _cut(text: str, limit: int) -> tuple[str, str]:
    """Split ``text`` (longer than ``limit``) into a first part of at most ``limit``
    characters and the rest, preferring paragraph, line, sentence and word breaks, in
    that order, outside code blocks. A code block longer than ``limit`` is cut between
    lines and its fence closed and reopened."""
    spans = _code_spans(text)

    def outside(position: int) -> bool:
        return all(not (start < position < end) for start, end, _ in spans)

    floor = limit // 4  # a break earlier than this makes a uselessly short message
    for pattern in (r"\n\s*\n", r"\n", _SENTENCE.pattern, r"\s"):
        cuts = [
            m.end()
            for m in re.finditer(pattern, text[: limit + 1])
            if floor <= m.end() <= limit and outside(m.start())
        ]
        if cuts:
            return text[: cuts[-1]], text[cuts[-1] :]
    for start, end, fence in spans:
        if start < limit < end:  # the limit falls inside this block
            if start >= floor:  # move the whole block to the next message
                return text[:start], text[start:]
            closing = "\n```"
            room = limit - len(closing)
            newline = text.rfind("\n", start + len(fence) + 1, room)
            at = newline if newline > start + len(fence) else room
            return text[:at] + closing, fence + "\n" + text[at:].lstrip("\n")
    return text[:limit], text[limit:]


def split_text(text: str, limit: int) -> list[str]:
    """``text`` as messages of at most ``limit`` characters (see :func:`_cut`)."""
    if limit < 16:
        raise ValueError("limit is too small to split text sensibly")
    parts: list[str] = []
    rest = text.strip()
    while len(rest) > limit:
        first, rest = _cut(rest, limit)
        first, rest = first.rstrip(), rest.strip()
        if first:
            parts.append(first)
    if rest:
        parts.append(rest)
    return parts


class RecentIds:
    """The last ``size`` ids seen, to drop events a platform delivers twice."""

    def __init__(self, size: int = 4096) -> None:
        self.size = size
        self._seen: OrderedDict[str, None] = OrderedDict()

    def first_time(self, event_id: str) -> bool:
        """True the first time an id is seen (an empty id is always new)."""
        if not event_id:
            return True
        if event_id in self._seen:
            self._seen.move_to_end(event_id)
            return False
        self._seen[event_id] = None
        if len(self._seen) > self.size:
            self._seen.popitem(last=False)
        return True


Handle = TypeVar("Handle")


class EditingChannel(abc.ABC, Generic[Handle]):
    """A reply channel for platforms where a sent message can be edited.

    Subclasses say how to show typing, post, edit and react; this class decides when:
    typing is repeated every ``typing_every`` seconds until the first text appears; the
    text is shown once it has ``min_stream_chars`` characters and updated at most every
    ``edit_every`` seconds (edits never hold up generation: they run beside it, the
    latest text wins); the finished reply replaces the streamed text and goes on in
    further messages when it is longer than ``limit``.

    What is on screen is kept on record while it streams (:meth:`keep_shown`, the bot's
    inbox); after a restart, :meth:`resume` carries on in that same message.
    """

    limit = 2000
    edit_every = 1.0
    typing_every = 8.0
    min_stream_chars = 24

    def __init__(self, *, stream: bool = True) -> None:
        self.streaming = stream
        self._text = ""
        self._shown = ""
        self._handle: Handle | None = None
        self._last_edit = 0.0
        self._pending: asyncio.Task[None] | None = None
        self._typing: asyncio.Task[None] | None = None
        self._on_shown: Record | None = None

    # --- what each platform implements ---------------------------------------------
    @abc.abstractmethod
    async def show_typing(self) -> None: ...

    @abc.abstractmethod
    async def post(self, text: str, *, first: bool) -> Handle:
        """Send a new message (``first``: the one that answers the user's message)."""

    @abc.abstractmethod
    async def edit(self, handle: Handle, text: str) -> None: ...

    async def react(self, emoji: str) -> None:
        """React to the user's message, where the platform can."""

    def handle_id(self, handle: Handle) -> str:
        """The platform's id of a posted message, as it is kept on record."""
        return str(handle)

    def handle_from_id(self, message_id: str) -> Handle | None:
        """A posted message again from its id, to edit it after a restart (None: this
        platform cannot; the reply is then posted anew)."""
        return None

    # --- crash safety ------------------------------------------------------------------
    def keep_shown(self, record: Record) -> None:
        """Call ``record(message id, text)`` each time the streamed reply is shown."""
        self._on_shown = record

    def resume(self, shown: Shown) -> None:
        """Go on with a reply a crashed process had shown: it is edited, not posted again."""
        handle = self.handle_from_id(shown.message_id)
        if handle is not None:
            self._handle, self._shown = handle, shown.text

    # --- the ReplyChannel protocol -----------------------------------------------------
    async def typing(self) -> None:
        if self._typing is None:
            self._typing = asyncio.create_task(self._keep_typing())

    async def stream(self, piece: str) -> None:
        self._text += piece
        if not self.streaming:
            return
        text = self._text.strip()
        if len(text) < self.min_stream_chars or len(text) > self.limit:
            return
        if self._pending is not None and not self._pending.done():
            return
        if time.monotonic() - self._last_edit < self.edit_every:
            return
        self._stop_typing()
        self._last_edit = time.monotonic()
        self._pending = asyncio.create_task(self._show(text))

    async def send(self, reply: Reply) -> None:
        self._stop_typing()
        if self._pending is not None:
            await self._pending
        parts = split_text(reply.text, self.limit)
        if not parts and self._handle is not None:
            parts = ["…"]  # something was shown; it cannot be edited to nothing
        if self._handle is not None:
            try:
                if parts[0] != self._shown:
                    await self.edit(self._handle, parts[0])
                parts = parts[1:]
            except Exception:
                log.warning("could not edit the streamed message; sending it anew", exc_info=True)
        for i, part in enumerate(parts):
            await self.post(part, first=i == 0 and self._handle is None)
        if reply.reaction:
            try:
                await self.react(reply.reaction)
            except Exception:  # a reaction is a nicety: never lose the reply over it
                log.warning("could not react with %s", reply.reaction, exc_info=True)
        # A plugin may answer more than once in a turn: the next answer is a new message.
        self._handle, self._shown, self._text, self._pending = None, "", "", None

    async def whisper(self, text: str) -> None:
        """Tell only the speaker; platforms that can do better than a reply override it."""
        for part in split_text(text, self.limit):
            await self.post(part, first=False)

    # --- internals ---------------------------------------------------------------------
    async def _show(self, text: str) -> None:
        try:
            if self._handle is None:
                # The platform has the message before its id comes back: what is being
                # posted is on record first (no id yet), so that a crash in between does
                # not leave it on screen unknown.
                await self._keep_on_record(text, posting=True)
                self._handle = await self.post(text, first=True)
            else:
                await self.edit(self._handle, text)
            self._shown = text
        except Exception:
            log.warning("streaming the reply failed; it will be sent when done", exc_info=True)
            self.streaming = False
            return
        await self._keep_on_record(text)

    async def _keep_on_record(self, text: str, *, posting: bool = False) -> None:
        """The posted message (:attr:`_handle`) now shows ``text`` (``posting``: is about
        to, its id not known yet): keep that on record."""
        if self._on_shown is None or (self._handle is None and not posting):
            return
        message_id = "" if posting or self._handle is None else self.handle_id(self._handle)
        try:
            await self._on_shown(message_id, text)
        except Exception:  # the reply goes on; only its record after a crash is missing
            log.warning("could not keep the streamed reply on record", exc_info=True)

    async def _keep_typing(self) -> None:
        until = time.monotonic() + 300  # never longer than a reply can take
        while time.monotonic() < until:
            try:
                await self.show_typing()
            except Exception:
                log.debug("typing indicator failed", exc_info=True)
            await asyncio.sleep(self.typing_every)

    def _stop_typing(self) -> None:
        if self._typing is not None:
            self._typing.cancel()
            self._typing = None


Outbox = Callable[[Place, str], Awaitable[None]]
"""How a platform says something unprompted (a reminder) in a place."""


class BotCore(Protocol):
    """What a platform adapter drives; :class:`core.bot.Bot` is one."""

    @property
    def commands(self) -> CommandTable:
        """Every command there is (for a platform's command menu)."""
        ...

    async def handle(self, message: Message, channel: ReplyChannel) -> TurnResult:
        """Run one turn; turns of one conversation run in the order handed in."""
        ...

    async def receive(self, message: Message, channel: ReplyChannel) -> asyncio.Future[TurnResult]:
        """Accept one message (durably, in the inbox, when this returns); the future is
        its turn."""
        ...

    async def resume(
        self, platform: str, channel_for: Callable[[Message, Shown | None], ReplyChannel]
    ) -> int:
        """Answer what ``platform``'s messages left unfinished when the bot last stopped."""
        ...

    async def last_seen(
        self, platform: str, *, within_s: float, limit: int
    ) -> list[tuple[str, str]]:
        """(channel id, last message id) where ``platform``'s messages were accepted lately."""
        ...

    def connect(self, platform: str, outbox: Outbox) -> None:
        """Say unprompted things on ``platform`` through ``outbox`` from now on."""
        ...

    async def history(self, sample: Message, *, limit: int) -> list[StoredTurn]:
        """The stored turns of ``sample``'s conversation, in its speaker's scope."""
        ...


class PlatformAdapter(abc.ABC):
    """One platform's connection. The life cycle, driven by ``socialbot run``:

    ``await login()`` checks the credentials (a :class:`~core.errors.ConfigError` naming
    the setting when they are refused); ``await start(bot)`` registers :meth:`send_to`
    with the bot and begins taking events in; ``await stop_intake()`` stops that (turns
    in flight go on); ``await close()`` disconnects once the bot has finished its turns.

    Each event the platform hands over is counted by :meth:`received` (with the time
    of the last), whether or not it becomes a turn: that is how a test, or an operator,
    knows an event has arrived.
    """

    platform: str = ""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.bot: BotCore | None = None
        self.accepting = False
        self.seen = RecentIds()
        self.events = 0
        """Events received since start (duplicates and ones that are not messages too)."""
        self.last_event_at: float | None = None
        """When the last event was received (``time.time()``), if any."""
        self._arrived = asyncio.Condition()
        self.malformed = 0
        """Events skipped because they could not be read (each counted once)."""
        self.restarts = 0
        """Times the watchdog restarted the connection."""
        self._malformed_seen = RecentIds()
        self._tasks: set[asyncio.Task[None]] = set()
        """Work the adapter started beside its handlers (see :meth:`_spawn`)."""

    @abc.abstractmethod
    async def login(self) -> None: ...

    @property
    def where(self) -> str:
        """How the start-up line names it."""
        return self.platform

    @property
    def connected(self) -> bool:
        """Connected to the platform and taking events in (``/readyz``, the metrics);
        platforms that can tell more (a live gateway, a recent poll) say so."""
        return self.accepting

    @property
    def quiet_limit_s(self) -> float | None:
        """How long this connection may go without a sign of life before the watchdog
        (``adapters/watchdog.py``) restarts it, under twice the platform's heartbeat. None: the
        library in use reconnects by itself, or there is nothing to restart."""
        return None

    async def restart(self) -> None:
        """Take the platform's events in afresh (the watchdog found it silent); only
        called where :attr:`quiet_limit_s` is set."""
        raise NotImplementedError(f"{self.platform} has no restart")

    @abc.abstractmethod
    async def send_to(self, place: Place, text: str) -> None:
        """Say ``text`` in ``place`` unprompted (a reminder), split as the platform needs."""

    async def start(self, bot: BotCore) -> None:
        """Register with ``bot``, queue what was left unanswered when it last stopped, and
        take events in; subclasses connect after this."""
        self.bot = bot
        bot.connect(self.platform, self.send_to)
        await bot.resume(self.platform, self.recovered_channel)
        self.accepting = True

    def recovered_channel(self, message: Message, shown: Shown | None) -> ReplyChannel:
        """Where a message accepted before a restart is answered (:meth:`answering`),
        going on in the message that showed its reply half way, where there is one."""
        channel = self.answering(message)
        if shown is not None and isinstance(channel, EditingChannel):
            channel.resume(shown)
        return channel

    def answering(self, message: Message) -> ReplyChannel:
        """A reply channel for ``message`` made from its ids alone (no native object), so
        that it can be made again after a restart: here through :meth:`send_to`, in its
        place; platforms that can answer it as a reply override it."""
        return OutboxChannel(self.send_to, message.place)

    async def received(self) -> None:
        """Count one event from the platform (call it first thing in each handler)."""
        self.last_event_at = time.time()
        async with self._arrived:
            self.events += 1
            self._arrived.notify_all()

    def _spawn(self, work: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        """Run ``work`` beside the handler that started it, kept in :attr:`_tasks` until
        done (so that it is not collected half way, and close can wait for it)."""
        task = asyncio.get_running_loop().create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def skipped(self, key: str, what: str, *, count_event: bool = False) -> None:
        """Log (``what`` names the event and why, never its content) and count an event
        that cannot be read, the first time ``key`` is seen. ``count_event``: it reaches
        no handler, so it is counted as received here."""
        if not self._malformed_seen.first_time(key):
            return
        self.malformed += 1
        log.warning("%s: skipped %s", self.platform, what)
        if count_event:
            await self.received()

    async def wait_events(self, count: int, within: float = 10.0) -> None:
        """Wait until ``count`` events have been received since start."""

        async def enough() -> None:
            async with self._arrived:
                await self._arrived.wait_for(lambda: self.events >= count)

        await asyncio.wait_for(enough(), within)

    async def stop_intake(self) -> None:
        self.accepting = False

    @abc.abstractmethod
    async def close(self) -> None: ...

    async def deliver(
        self,
        message: Message | None,
        channel: ReplyChannel,
        *,
        then: Callable[[], Awaitable[None]] | None = None,
    ) -> bool:
        """Hand one converted event to the bot, once, while taking events in; returns
        once the bot has accepted it (written it to its inbox), which is when the platform
        may be told it was received. The turn goes on beside the caller; ``then`` is
        called after it.

        When the bot cannot accept it (its database is failing), this tries again, with
        pauses growing to 30 s, for as long as intake lasts: the platform is not told the
        message arrived, so it is not lost. False when it was not handed over.

        ``socialbot run`` stops intake, then closes the bot (which finishes every turn
        it has accepted), then closes the adapters: a reply in flight still goes out.
        """
        if message is None or self.bot is None or not self.accepting:
            return False
        if not self.seen.first_time(f"{message.place.channel}/{message.id}"):
            log.info("%s: dropped a message delivered twice", self.platform)
            return False
        pause = 0.5
        while True:
            try:
                turn = await self.bot.receive(message, channel)
                break
            except Exception as error:
                if not self.accepting:
                    return False
                log.error(
                    "%s: could not accept a message (%s: %s); trying again in %g s",
                    self.platform,
                    type(error).__name__,
                    error,
                    pause,
                )
                await asyncio.sleep(pause)
                pause = min(pause * 2, 30.0)
        self._spawn(self._finish(turn, then))
        return True

    async def _finish(
        self, turn: asyncio.Future[TurnResult], then: Callable[[], Awaitable[None]] | None
    ) -> None:
        try:
            await asyncio.shield(turn)  # closing the adapter does not cancel the turn
            if then is not None:
                await then()
        except Exception:
            log.exception("%s: a turn failed", self.platform)


class Malformed(ValueError):
    """An event that parsed but lacks what a turn needs (its ``args[0]``: which field;
    never the content)."""


def unreadable(error: Exception, sender: str) -> str:
    """Why an event could not become a turn, for the log: the field ``sender`` did not
    send as promised, or the error's kind; never the event's content."""
    if isinstance(error, Malformed):
        return f"its {error.args[0]} is not what {sender} sends"
    return f"it cannot be read ({type(error).__name__})"


class OutboxChannel:
    """A reply channel that answers in a place through a platform's :meth:`send_to`:
    the whole reply at once, no typing, no reactions."""

    def __init__(self, outbox: Outbox, place: Place) -> None:
        self.outbox = outbox
        self.place = place

    async def typing(self) -> None:
        pass

    async def stream(self, piece: str) -> None:
        pass

    async def send(self, reply: Reply) -> None:
        await self.outbox(self.place, reply.text)


class Knocks:
    """Requests refused before they are read (a wrong secret, no signature): anyone who
    can reach the port can send them, so they are logged at most once ``every`` seconds,
    with how many there were."""

    def __init__(self, what: str, every: float = 60.0) -> None:
        self.what = what
        self.every = every
        self._count = 0
        self._logged = -every

    def note(self, remote: str | None) -> None:
        self._count += 1
        now = time.monotonic()
        if now - self._logged >= self.every:
            self._logged = now
            log.warning("%d %s (the last from %s)", self._count, self.what, remote)
            self._count = 0


def bound_port(site: web.TCPSite) -> int:
    """The port a site listens on (useful when it was asked for port 0)."""
    server: Any = site._server
    sockets = getattr(server, "sockets", None) or ()
    return int(sockets[0].getsockname()[1]) if sockets else 0
