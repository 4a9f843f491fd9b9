"""The interface every language-model backend implements (the factory that picks one
is :mod:`core.generation.factory`)."""

from __future__ import annotations

import abc
import asyncio
from collections.abc import AsyncIterator, Callable, Sequence
from typing import TYPE_CHECKING

from core.errors import BackendError
from core.types import ChatMessage, Role

if TYPE_CHECKING:
    from core.settings import GenerationSettings


class Generator(abc.ABC):
    """A chat model that streams text.

    Token counting is part of the interface so that the dialogue manager can fit
    the prompt to the model's own tokenizer (or to a stated estimate where the
    model is remote and its tokenizer unknown).
    """

    continues_replies: bool = False
    """True when a chat ending in an assistant message is continued (the policy's opening)."""

    name: str = "generator"
    context_window: int = 2048
    per_message_overhead: int = 4
    """Template tokens around each message (role markers, separators)."""
    remote: bool = False
    """True when prompts leave this machine (then personal data is redacted first)."""
    shares_cpu_with_torch: bool = True
    """False when the engine needs the bot's other torch models (embedder, emotion reader)
    to run on one thread (llama.cpp: torch's thread pool slows it down 3x)."""
    late_system: bool = False
    """True when the chat template takes a system message after the conversation has
    begun (the dialogue manager then puts what changes every turn there, so that the
    start of the prompt stays the same from turn to turn)."""

    async def start(self) -> None:  # noqa: B027 - optional hook, nothing to do by default
        """Load weights or open connections; called once before use."""

    async def close(self) -> None:  # noqa: B027 - optional hook
        """Release what :meth:`start` took."""

    @abc.abstractmethod
    def count_text(self, text: str) -> int:
        """Tokens of ``text`` alone."""

    def count_message(self, message: ChatMessage) -> int:
        return self.count_text(message.content) + self.per_message_overhead

    def count_tokens(self, messages: Sequence[ChatMessage]) -> int:
        """Tokens of the whole prompt as it will be sent, generation prompt included."""
        return sum(self.count_message(m) for m in messages) + self.per_message_overhead

    def measure_overhead(self) -> int:
        """Template tokens a message adds besides its text, measured with the model's own
        template (engines call it once the tokenizer is loaded)."""
        probe = [ChatMessage(Role.SYSTEM, "a")]
        with_user = [*probe, ChatMessage(Role.USER, "b")]
        return self.count_tokens(with_user) - self.count_tokens(probe) - self.count_text("b")

    def probe_late_system(self, render: Callable[[Sequence[ChatMessage]], str]) -> bool:
        """Whether ``render`` (the model's chat template) keeps a system message placed
        between turns (some templates refuse one or silently drop it)."""
        reply, marker = "zq-probe-reply", "zq-probe-note"
        probe = [
            ChatMessage(Role.SYSTEM, "a"),
            ChatMessage(Role.USER, "b"),
            ChatMessage(Role.ASSISTANT, reply),
            ChatMessage(Role.SYSTEM, marker),
            ChatMessage(Role.USER, "d"),
        ]
        try:
            text = render(probe)
        except Exception:  # a template that raises does not take it
            return False
        return reply in text and marker in text and text.index(marker) > text.index(reply)

    @abc.abstractmethod
    def stream(
        self, messages: Sequence[ChatMessage], params: GenerationSettings
    ) -> AsyncIterator[str]:
        """Yield the reply's text in pieces as it is generated."""

    async def generate(
        self,
        messages: Sequence[ChatMessage],
        params: GenerationSettings,
        *,
        background: bool = False,
    ) -> str:
        """The whole reply. ``background`` marks work nobody is waiting on (a summary):
        an engine that schedules may put it after replies (see :meth:`_pieces`)."""
        return "".join([p async for p in self._pieces(messages, params, background=background)])

    def _pieces(
        self, messages: Sequence[ChatMessage], params: GenerationSettings, *, background: bool
    ) -> AsyncIterator[str]:
        """The reply's pieces for :meth:`generate`; an engine that schedules background
        work apart overrides this."""
        return self.stream(messages, params)


BACKGROUND_MAX_TOKENS = 120
"""The most tokens background work (a conversation's summary) generates at once: engines
that size a conversation's room (llama.cpp's slots) leave this much for it."""

END = object()
"""What a worker thread emits when the reply is complete."""


class Handoff:
    """A reply's pieces handed from a worker thread to the event loop, in order.

    Make it on the event loop; the worker calls :meth:`emit` (thread-safe) with text,
    with an exception, or with :data:`END`. :meth:`pieces` yields the text and raises
    :class:`BackendError` for an exception.
    """

    def __init__(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._queue: asyncio.Queue[object] = asyncio.Queue()

    def emit(self, item: object) -> None:
        self._loop.call_soon_threadsafe(self._queue.put_nowait, item)

    async def pieces(self) -> AsyncIterator[str]:
        while True:
            item = await self._queue.get()
            if item is END:
                return
            if isinstance(item, BaseException):
                raise BackendError(f"generation failed: {item}") from item
            assert isinstance(item, str)
            if item:
                yield item
