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
from core.ordering import KeyedSerializer
from core.people import rights
from core.people.access import Access
from core.plugins.host import PluginHost
from core.privacy import Privacy
from core.settings import BotProfile, Settings
from core.storage.store import Store, StoredTurn
from core.turn import Turn, TurnResult
from core.types import Message, Place

Outbox = Callable[[Place, str], Awaitable[None]]

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
        self.generator = generator
        self.memory = LongTermMemory(store, embedder) if embedder is not None else None
        self.facts = Profiles(store)
        self.summaries = Summaries(store)
        self.emotions = Batcher(emotions) if emotions is not None else None
        self.emotion_history = EmotionHistory(store)
        self._order = KeyedSerializer()
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
            await bot.access.load()
            await bot.plugin_host.start()
        except BaseException:
            await bot.close()
            raise
        await rights.purge_older_than(store, bot.memory, profile.privacy.retention_days)
        if profile.privacy.retention_days > 0:
            bot._retention = bot.spawn(bot._retention_loop())
        log.info("bot %s ready (%s backend)", profile.name, generator.name)
        return bot

    async def handle(self, message: Message, channel: ReplyChannel) -> TurnResult:
        """Run one message through the pipeline, after earlier ones of its conversation."""
        if self._closed:
            raise RuntimeError("the bot is closed")
        message = message.valid()  # one person's broken text must not fail anyone's turn
        if self.profile.groups.context == "person" and not message.place.is_private:
            # each member's own conversation: keyed, stored and ordered apart
            place = dataclasses.replace(message.place, person=message.speaker.user_id)
            message = dataclasses.replace(message, place=place)
        turn = Turn(self, message, channel)
        return await self._order.run(
            message.place.conversation, lambda: pipeline.run(turn, self._stages)
        )

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
        await self._order.drain()

    async def settle(self) -> None:
        """Wait until every turn accepted so far and the background work they started
        (summaries folding) have finished: what a test awaits before it looks."""
        while True:
            await self._order.drain()
            if not self.folding.running:
                if not len(self._order):
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

    async def close(self) -> None:
        """Finish the turns in flight and pending summaries, then release everything."""
        if self._closed:
            return
        self._closed = True
        self.folding.closed = True  # no new summaries: the ones started are finished
        await self._order.drain()
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
