"""A remote backend: any OpenAI-compatible chat-completions server.

Ollama, vLLM, llama.cpp's server, LM Studio and OpenAI itself all speak this
protocol. The official ``openai`` client does the HTTP, streaming (server-sent
events), timeouts and retries with back-off.

The remote model's tokenizer is unknown here, so prompt sizes are estimated
conservatively (one token per three characters, more than most tokenizers
use); set ``context_window`` in the profile to the server's real limit.
"""

from __future__ import annotations

import logging
import math
from collections.abc import AsyncIterator, Sequence
from typing import TYPE_CHECKING, Any

from core.errors import BackendError
from core.generation.base import Generator
from core.types import ChatMessage

if TYPE_CHECKING:
    from core.settings import GenerationSettings

log = logging.getLogger(__name__)

CHARS_PER_TOKEN = 3.0


class OpenAIGenerator(Generator):
    name = "openai"
    remote = True

    def __init__(
        self,
        model: str,
        *,
        base_url: str,
        api_key: str = "",
        timeout_s: float = 120.0,
        max_retries: int = 2,
        context_window: int | None = None,
    ) -> None:
        self.model_name = model
        self.base_url = base_url
        self._api_key = api_key
        self._timeout_s = timeout_s
        self._max_retries = max_retries
        self.context_window = context_window or 8192
        self._client: Any = None

    async def start(self) -> None:
        from openai import AsyncOpenAI

        self._client = AsyncOpenAI(
            base_url=self.base_url,
            # Local servers (Ollama, llama.cpp) need no key, but the client insists on one.
            api_key=self._api_key or "no-key",
            timeout=self._timeout_s,
            max_retries=self._max_retries,
        )

    async def close(self) -> None:
        if self._client is not None:
            await self._client.close()
            self._client = None

    def count_text(self, text: str) -> int:
        return math.ceil(len(text) / CHARS_PER_TOKEN)

    async def stream(
        self, messages: Sequence[ChatMessage], params: GenerationSettings
    ) -> AsyncIterator[str]:
        import openai

        if self._client is None:
            raise BackendError("the OpenAI-compatible generator was not started")
        options: dict[str, Any] = {
            "model": self.model_name,
            "messages": [m.as_dict() for m in messages],
            "stream": True,
            "max_tokens": params.max_new_tokens,
            "temperature": params.temperature,
            "top_p": params.top_p,
        }
        if params.seed is not None:
            options["seed"] = params.seed
        try:
            response = await self._client.chat.completions.create(**options)
            async for chunk in response:
                if not chunk.choices:
                    continue
                piece = chunk.choices[0].delta.content
                if piece:
                    yield piece
        except openai.APIStatusError as error:
            raise BackendError(
                f"{self.base_url} answered HTTP {error.status_code}: {_short(error.message)}"
            ) from None
        except openai.APITimeoutError:
            raise BackendError(f"{self.base_url} did not answer in {self._timeout_s:g} s") from None
        except openai.APIConnectionError:
            raise BackendError(f"cannot connect to {self.base_url}") from None
        except openai.OpenAIError as error:
            raise BackendError(f"{self.base_url}: {_short(str(error))}") from None


def _short(text: str, limit: int = 200) -> str:
    line = text.strip().splitlines()[0] if text.strip() else ""
    return line if len(line) <= limit else line[: limit - 1] + "…"
