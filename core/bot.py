"""A running bot: one profile, its storage, memory and generator, and the turn pipeline.

This is the composition root: it builds every service and hands each one exactly
what it uses. Nothing but the composition points (the CLI, ``socialbot run``, the
terminal, the test kit) imports it; the parts it assembles see it through narrow
protocols (:class:`core.turn.Services`, :class:`core.plugins.PluginServices`,
:class:`core.status.Observed`, :class:`adapters.base.BotCore`).

Adapters call :meth:`Bot.handle` for each message. Turns of one conversation run
strictly in order; different conversations run concurrently.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import logging
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Coroutine
from pathlib import Path
from types import TracebackType
from typing import Any

from core import pipeline, status
from core.channel import ReplyChannel
from core.commands import Caller, CommandTable, Permission, command
from core.emotion.classifier import WEIGHTS, EmotionClassifier
from core.emotion.history import EmotionHistory
from core.emotion.reader import Batcher, EmotionReader
from core.errors import ModelNotFoundError
from core.generation.base import Generator
from core.generation.factory import create_generator
from core.memory.facts import Profiles
from core.memory.longterm import Embedder, LongTermMemory, SentenceEmbedder
from core.memory.summary import Folding, Summaries
from core.metrics import Metrics
from core.ordering import KeyedSerializer
from core.people import rights
from core.people.access import Access
from core.plugins.host import PluginHost
from core.privacy import Privacy
from core.settings import BotProfile, Settings
from core.storage.inbox import Entry, Inbox, Shown
from core.storage.store import Store, StoredTurn
from core.turn import Turn, TurnResult
from core.types import Message, Place, Reply

Outbox = Callable[[Place, str], Awaitable[None]]
ChannelFor = Callable[[Message, Shown | None], ReplyChannel]
"""How a platform answers a message again after a restart (and goes on with the reply
that was shown, if any)."""

DOWN = (
    "Sorry, I was offline when you sent this and couldn't answer then: \u201c{excerpt}\u201d. "
    "Send it again if you'd still like an answer."
)

log = logging.getLogger(__name__)

RETENTION_INTERVAL_S = 3600.0


class Bot:
    def __init__(
        self,
        settings: Settings,
        profile: BotProfile,
        store: Store,
        generator: Generator,
        embedder: Embedder | None = None,
        emotions: EmotionReader | None = None,
    ) -> None:
        self.settings = settings
        self.profile = profile
        self.store = store
        self.inbox = Inbox(store, profile.name)
        self.generator = generator
        self.memory = LongTermMemory(store, embedder) if embedder is not None else None
        self.facts = Profiles(store)
        self.summaries = Summaries(store)
        self.emotions = Batcher(emotions) if emotions is not None else None
        self.emotion_history = EmotionHistory(store)
        self._order = KeyedSerializer()
        self._arriving: set[asyncio.Future[None]] = set()
        """Messages being written to the inbox (their turns are not queued yet)."""
        self._background: set[asyncio.Task[Any]] = set()
        self.folding = Folding(
            self.summaries,
            generator,
            profile.name,
            at_least=profile.memory.summarize_after,
            spawn=self.spawn,
        )
        self._retention: asyncio.Task[Any] | None = None
        self._closed = False
        self._outboxes: dict[str, Outbox] = {}
        """Per platform, how to say something unprompted (adapters connect themselves)."""
        self.started = time.monotonic()
        self.outcomes: Counter[str] = Counter()
        """How this process's turns ended (see core.status.OUTCOMES)."""
        self.metrics = Metrics(lambda: self.busy_conversations)
        # Every command in one table; the core's own first, so that no plugin takes them.
        self.commands = CommandTable()
        self.commands.add(
            command(
                self._status,
                name="status",
                help="what I run, since when, and what I have done (admin)",
                permission=Permission.ADMIN,
                owner="core",
            )
        )
        self.access = Access(settings, store)
        self.access.register(self.commands)
        self.plugin_host = PluginHost(self)
        self._stages = pipeline.stages(self.plugin_host.route, self.plugin_host.run_hooks)

    @classmethod
    async def open(
        cls,
        settings: Settings,
        profile: BotProfile,
        *,
        generator: Generator | None = None,
        embedder: Embedder | None = None,
        emotions: EmotionReader | None = None,
    ) -> Bot:
        """Open storage and start the models: the profile's, unless they are given.

        The bot owns every model it runs, given ones included: :meth:`close` closes them.
        """
        store = await Store.open(
            settings.database_path,
            Privacy.from_settings(settings),
            synchronous=settings.db_synchronous,
        )
        generator = generator or create_generator(profile, settings)
        if not generator.shares_cpu_with_torch:
            # Measured: once a torch model (the embedder, the emotion reader) has run with
            # its default thread pool, llama.cpp in the same process decodes 3x slower
            # (85 -> 29 tokens/s on 2 cores). One torch thread for those small models
            # keeps llama.cpp at full speed.
            import torch

            torch.set_num_threads(1)
        if embedder is None and profile.memory.enabled:
            embedder = SentenceEmbedder(settings.embedding_model)
        if emotions is None and profile.emotion.enabled:
            emotions = EmotionClassifier(settings.emotion_weights or WEIGHTS)
        started: list[Generator | Embedder] = []
        try:
            # One after the other: loading two transformers models at once in two threads
            # races on process-wide state the loaders patch (default dtype, weight init).
            for model in (generator, embedder):
                if model is not None:
                    await model.start()
                    started.append(model)
            if emotions is not None:
                try:
                    await emotions.start()
                except ModelNotFoundError as error:  # optional: the bot works without it
                    log.warning("emotion reading is off: %s", error)
                    emotions = None
        except BaseException:
            for model in started:
                await model.close()
            await store.close()
            raise
        bot = cls(settings, profile, store, generator, embedder, emotions)
        try:
            await bot.inbox.start()
            await bot.access.load()
            await bot.plugin_host.start()
        except BaseException:
            await bot.close()
            raise
        await rights.purge_older_than(store, bot.memory, profile.privacy.retention_days)
        await bot.inbox.prune(settings.inbox_dedupe_s)
        bot._retention = bot.spawn(bot._retention_loop())
        log.info("bot %s ready (%s backend)", profile.name, generator.name)
        return bot

    async def handle(self, message: Message, channel: ReplyChannel) -> TurnResult:
        """Run one message through the pipeline, after earlier ones of its conversation."""
        return await (await self.receive(message, channel))

    async def receive(self, message: Message, channel: ReplyChannel) -> asyncio.Future[TurnResult]:
        """Accept one message: when it is one to answer, it is written to the inbox and
        committed before this returns (an adapter confirms it to its platform then). The
        future is its turn, run after earlier ones of its conversation."""
        if self._closed:
            raise RuntimeError("the bot is closed")
        message = message.valid()  # one person's broken text must not fail anyone's turn
        if self.profile.groups.context == "person" and not message.place.is_private:
            # each member's own conversation: keyed, stored and ordered apart
            place = dataclasses.replace(message.place, person=message.speaker.user_id)
            message = dataclasses.replace(message, place=place)
        entry = None
        if pipeline.not_for_a_turn(message, self.profile.groups) is None:
            arriving = asyncio.get_running_loop().create_future()
            self._arriving.add(arriving)  # idle() and settle() wait for it too
            try:
                entry = await self.inbox.accept(message)
            finally:
                self._arriving.discard(arriving)
                arriving.set_result(None)
            if entry is None:
                log.info("dropped a message accepted before (delivered again)")
                twice = asyncio.get_running_loop().create_future()
                twice.set_result(TurnResult(None, "delivered twice"))
                return twice
        return self._submit(message, channel, entry)

    def _submit(
        self, message: Message, channel: ReplyChannel, entry: int | None
    ) -> asyncio.Future[TurnResult]:
        turn = Turn(self, message, channel, entry=entry)
        keep_shown = getattr(channel, "keep_shown", None)
        if entry is not None and keep_shown is not None:  # a streamed reply is on record
            keep_shown(functools.partial(self.inbox.shown, entry))
        return self._order.submit(message.place.conversation, functools.partial(self._run, turn))

    async def _run(self, turn: Turn) -> TurnResult:
        result = await pipeline.run(turn, self._stages)
        self.metrics.turn_ended(turn, time.perf_counter() - turn.started)
        if turn.entry is not None:
            await self._finish(turn.entry)
        return result

    async def _finish(self, entry: int) -> None:
        try:
            await self.inbox.done(entry)
        except Exception:  # it is answered again on the next start
            log.exception("could not mark message %d answered in the inbox", entry)

    async def resume(self, platform: str, channel_for: ChannelFor) -> int:
        """Take up what ``platform``'s messages left unfinished when the bot last stopped
        (a crash, a kill): each is queued in its conversation, ahead of anything new, and
        answered; one whose reply was stored is sent that reply; one older than
        ``inbox_answer_within_s`` is told the bot was down. Returns how many."""
        entries = await self.inbox.unfinished(platform)
        now = time.time()
        for entry in entries:
            if entry.shown is not None and not entry.shown.message_id:
                log.warning(
                    "%s: the reply to message %d was being posted when the bot stopped: its"
                    " first part may be on screen (the platform did not say where); the whole"
                    " reply is posted anew",
                    platform,
                    entry.id,
                )
            channel = channel_for(entry.message, entry.shown)
            key = entry.message.place.conversation
            if entry.state == "stored":
                self._order.submit(key, functools.partial(self._resend, entry, channel))
            elif now - entry.received_at > self.settings.inbox_answer_within_s:
                self._order.submit(key, functools.partial(self._too_late, entry, channel))
            else:
                self._submit(entry.message, channel, entry.id)
        if entries:
            log.info("%s: answering %d message(s) left unfinished", platform, len(entries))
        return len(entries)

    async def last_seen(
        self, platform: str, *, within_s: float, limit: int
    ) -> list[tuple[str, str]]:
        """Where to catch up from on ``platform`` (see :meth:`Inbox.last_seen`)."""
        return await self.inbox.last_seen(platform, within_s=within_s, limit=limit)

    async def _resend(self, entry: Entry, channel: ReplyChannel) -> TurnResult:
        """Send a reply that was stored but maybe not sent (or only partly shown)."""
        text = entry.reply if entry.reply is not None else pipeline.APOLOGY
        return await self._say_once(entry, channel, text, "sent after a restart")

    async def _too_late(self, entry: Entry, channel: ReplyChannel) -> TurnResult:
        excerpt = " ".join(entry.message.text.split())
        excerpt = excerpt if len(excerpt) <= 80 else excerpt[:79] + "\u2026"
        text = DOWN.format(excerpt=excerpt)
        return await self._say_once(entry, channel, text, "too old after a restart")

    async def _say_once(
        self, entry: Entry, channel: ReplyChannel, text: str, why: str
    ) -> TurnResult:
        reply = Reply(text, entry.message.place, entry.message.id)
        try:
            await channel.send(reply)
        except Exception:
            log.exception("could not send a reply %s", why)
            return TurnResult(None, why)
        await self._finish(entry.id)
        return TurnResult(reply, why)

    async def history(self, sample: Message, *, limit: int = 50) -> list[StoredTurn]:
        """The stored turns of ``sample``'s conversation (since its last /reset), as its
        speaker's scope sees them, oldest first."""
        scope = self.store.privacy.scope(sample)
        return await self.store.recent_turns(self.profile.name, sample.place, scope, limit=limit)

    def connect(self, platform: str, outbox: Outbox) -> None:
        """Say unprompted things on ``platform`` through ``outbox`` (an adapter's
        ``send_to``) from now on."""
        self._outboxes[platform] = outbox

    async def send_to(self, place: Place, text: str) -> bool:
        """Say ``text`` in ``place`` unprompted; False when its platform is not running."""
        outbox = self._outboxes.get(place.platform)
        if outbox is None:
            log.warning("cannot send to %s: that platform is not running", place.platform)
            return False
        await outbox(place, text)
        return True

    async def idle(self) -> None:
        """Wait until every turn accepted so far has finished (its reply sent)."""
        await self._drain()

    async def _drain(self) -> None:
        while self._arriving or len(self._order):
            await asyncio.gather(*self._arriving)
            await self._order.drain()
        await self.inbox.flush()  # what was answered is marked so in the database

    async def settle(self) -> None:
        """Wait until every turn accepted so far and the background work they started
        (summaries folding) have finished: what a test awaits before it looks."""
        while True:
            await self._drain()
            if not self.folding.running:
                if not len(self._order) and not self._arriving:
                    return
                continue
            await self.folding.finish()

    # --- what /status (and an operator's view) shows --------------------------------------
    @property
    def busy_conversations(self) -> int:
        return len(self._order)

    @property
    def engine(self) -> str:
        return self.generator.name

    @property
    def reads_emotions(self) -> bool:
        return self.emotions is not None

    @property
    def remembers(self) -> bool:
        return self.memory is not None

    @property
    def platforms(self) -> list[str]:
        """The platforms connected (that can be sent to)."""
        return sorted(self._outboxes)

    @property
    def database_files(self) -> list[Path]:
        path = self.store.path
        return [path, path.with_name(path.name + "-wal")]

    @property
    def plugin_names(self) -> list[str]:
        return sorted(self.plugin_host.loaded)

    async def check(self) -> dict[str, str]:
        """What ``/readyz`` reports of the bot itself: "ok", or what is wrong, for the
        database (it takes a write within 2 s) and the model engine."""
        checks = {"engine": "ok" if not self._closed else "closed"}
        try:
            async with asyncio.timeout(2.0), self.store.transaction():
                pass  # the write lock taken and a commit made: the database is writable
            checks["database"] = "ok"
        except Exception as error:
            checks["database"] = f"{type(error).__name__}: {error}"[:200]
        return checks

    async def _status(self, ctx: Caller) -> str:
        return status.describe(self)

    def spawn(self, coroutine: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        """Run work that no reply waits for; errors are logged, close() waits for it."""
        task = asyncio.create_task(coroutine)
        self._background.add(task)

        def done(finished: asyncio.Task[Any]) -> None:
            self._background.discard(finished)
            if not finished.cancelled() and finished.exception() is not None:
                log.error("background work failed", exc_info=finished.exception())

        task.add_done_callback(done)
        return task

    async def _retention_loop(self) -> None:
        while True:
            await asyncio.sleep(RETENTION_INTERVAL_S)
            await rights.purge_older_than(
                self.store, self.memory, self.profile.privacy.retention_days
            )
            await self.inbox.prune(self.settings.inbox_dedupe_s)

    async def close(self) -> None:
        """Finish the turns in flight and pending summaries, then release everything."""
        if self._closed:
            return
        self._closed = True
        self.folding.closed = True  # no new summaries: the ones started are finished
        await self._drain()
        await self.plugin_host.stop()
        if self._retention is not None:
            self._retention.cancel()
        await asyncio.gather(*self._background, return_exceptions=True)
        try:
            await self.generator.close()
            if self.memory is not None:
                await self.memory.embedder.close()
            if self.emotions is not None:
                await self.emotions.reader.close()
        finally:
            self.inbox.close()
            await self.store.close()

    async def __aenter__(self) -> Bot:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()
