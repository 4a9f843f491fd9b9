"""The interface every language-model backend implements, and the factory."""

from __future__ import annotations

import abc
import asyncio
from collections.abc import AsyncIterator, Callable, Sequence
from typing import TYPE_CHECKING

from core.errors import BackendError, ConfigError
from core.types import ChatMessage, Role

if TYPE_CHECKING:
    from core.settings import BotProfile, GenerationSettings, Settings


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
        an engine that schedules may put it after replies."""
        return "".join([piece async for piece in self.stream(messages, params)])


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


def engine_for(profile: BotProfile) -> str:
    """The backend that runs a profile's model: ``backend``, or for 'auto' the fastest
    that can: llama.cpp for a GGUF model (the embedded one included) when it is
    installed and no adapter is named, transformers otherwise."""
    model = profile.model
    if model.backend != "auto":
        if model.backend == "llama.cpp" and profile.model.adapter:
            raise ConfigError(
                "a LoRA adapter runs on the transformers backend: set [model] backend = "
                "'transformers' or 'auto'"
            )
        return model.backend
    from core.generation import llamacpp_engine

    gguf = model.model == "embedded" or bool(model.gguf_file) or model.model.endswith(".gguf")
    if gguf and not model.adapter and llamacpp_engine.available():
        return "llama.cpp"
    return "transformers"


TEMPLATE_SLACK = 128
"""Tokens allowed past the dialogue manager's count (template tokens it estimates)."""


def conversation_tokens(profile: BotProfile) -> int:
    """Tokens one conversation's prompt and reply take at most: the context budget, and
    the longer of a reply and a summary (a summary's prompt is fitted to the same room)."""
    from core.summary import PARAMS as SUMMARY

    reply = max(profile.generation.max_new_tokens, SUMMARY.max_new_tokens)
    return profile.context.budget_tokens + reply + TEMPLATE_SLACK


def create_generator(profile: BotProfile, settings: Settings) -> Generator:
    """The backend a profile asks for (not yet started)."""
    model = profile.model
    backend = engine_for(profile)
    if backend == "llama.cpp":
        from core.generation import models
        from core.generation.llamacpp_engine import LlamaCppGenerator

        source = models.gguf_source(model.model, model.gguf_file)
        if source is None:
            raise ConfigError(
                f"backend 'llama.cpp' runs GGUF files; {model.model!r} is not one "
                "(name a .gguf file, or set gguf_file)"
            )
        return LlamaCppGenerator(
            source.path,
            threads=model.threads,
            context_window=model.context_window,
            conversation_tokens=conversation_tokens(profile),
            parallel=model.parallel,
            queue_limit=model.queue_limit,
            reuse_chunk=model.reuse_chunk,
        )
    if backend == "transformers":
        from core.generation.transformers_engine import TransformersGenerator

        return TransformersGenerator(
            model.model,
            gguf_file=model.gguf_file,
            cache_dir=settings.cache_dir,
            threads=model.threads,
            context_window=model.context_window,
            adapter=profile.adapter_path(),
            merge_adapter=model.merge_adapter,
            device=model.device,
        )
    if model.backend == "openai":
        from core.generation.openai_engine import OpenAIGenerator

        return OpenAIGenerator(
            model.model,
            base_url=model.base_url or settings.openai_base_url,
            api_key=settings.openai_api_key.get_secret_value(),
            timeout_s=model.timeout_s,
            max_retries=model.max_retries,
            context_window=model.context_window,
        )
    raise AssertionError(f"unknown backend {model.backend!r}")  # pydantic rejects it first
