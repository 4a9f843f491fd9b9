"""A deterministic generator for tests: no model, instant, inspectable.

Shipped in the package (not only in ``tests/``) so that plugin authors can test
their plugins with it too.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Sequence
from typing import TYPE_CHECKING

from core.errors import BackendError
from core.generation.base import Generator
from core.types import ChatMessage, Role

if TYPE_CHECKING:
    from core.settings import GenerationSettings

Script = Callable[[Sequence[ChatMessage]], str]


def echo(messages: Sequence[ChatMessage]) -> str:
    """The default script: repeat the last user message."""
    last = next((m.content for m in reversed(messages) if m.role is Role.USER), "")
    return f"echo: {last}"


class FakeGenerator(Generator):
    """Answers with ``script(messages)``, streamed word by word.

    Tokens are whitespace-separated words, so budgets in tests are easy to reason
    about. Every prompt it was given is kept in :attr:`prompts`. ``delay`` (s)
    is awaited before each piece; the generation settings of each call are in
    :attr:`params`; ``fail`` makes every call raise
    :class:`BackendError`; ``late_system`` says its "template" takes a system message
    between turns, as the local engines' usually do.
    """

    name = "fake"
    continues_replies = True

    def __init__(
        self,
        script: Script = echo,
        *,
        context_window: int = 4096,
        delay: float = 0.0,
        fail: bool = False,
        late_system: bool = False,
    ) -> None:
        self.script = script
        self.late_system = late_system
        self.context_window = context_window
        self.delay = delay
        self.fail = fail
        self.prompts: list[list[ChatMessage]] = []
        self.params: list[GenerationSettings] = []

    def count_text(self, text: str) -> int:
        return len(text.split())

    async def stream(
        self, messages: Sequence[ChatMessage], params: GenerationSettings
    ) -> AsyncIterator[str]:
        self.prompts.append(list(messages))
        self.params.append(params)
        if self.fail:
            raise BackendError("the fake generator was told to fail")
        words = self.script(messages).split(" ")
        for index, word in enumerate(words[: params.max_new_tokens]):
            if self.delay:
                await asyncio.sleep(self.delay)
            yield word if index == 0 else " " + word
