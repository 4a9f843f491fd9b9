"""A running bot: one profile, its storage and generator, and the turn pipeline.

Adapters call :meth:`Bot.handle` for each message. Turns of one conversation run
strictly in order; different conversations run concurrently.
"""

from __future__ import annotations

import logging
from types import TracebackType

from core import pipeline
from core.adapter import ReplyChannel
from core.generation.base import Generator, create_generator
from core.ordering import KeyedSerializer
from core.settings import BotProfile, Settings
from core.storage import Store
from core.types import Message

log = logging.getLogger(__name__)


class Bot:
    def __init__(
        self, settings: Settings, profile: BotProfile, store: Store, generator: Generator
    ) -> None:
        self.settings = settings
        self.profile = profile
        self.store = store
        self.generator = generator
        self._order = KeyedSerializer()
        self._closed = False

    @classmethod
    async def open(
        cls, settings: Settings, profile: BotProfile, *, generator: Generator | None = None
    ) -> Bot:
        """Open storage and start the generator (the profile's, unless one is given)."""
        store = await Store.open(settings.database_path, synchronous=settings.db_synchronous)
        generator = generator or create_generator(profile, settings)
        try:
            await generator.start()
        except BaseException:
            await store.close()
            raise
        log.info("bot %s ready (%s backend)", profile.name, generator.name)
        return cls(settings, profile, store, generator)

    async def handle(self, message: Message, channel: ReplyChannel) -> pipeline.TurnResult:
        """Run one message through the pipeline, after earlier ones of its conversation."""
        if self._closed:
            raise RuntimeError("the bot is closed")
        turn = pipeline.Turn(self, message, channel)
        return await self._order.run(message.place.conversation, lambda: pipeline.run(turn))

    @property
    def busy_conversations(self) -> int:
        return len(self._order)

    async def close(self) -> None:
        """Finish the turns in flight, then release the generator and storage."""
        if self._closed:
            return
        self._closed = True
        await self._order.drain()
        try:
            await self.generator.close()
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
