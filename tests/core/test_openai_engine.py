"""The OpenAI-compatible backend against a fake server on 127.0.0.1 (real HTTP, real SSE)."""

from __future__ import annotations

import asyncio
import csv
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from core import pipeline, testing
from core.bot import Bot
from core.channel import CollectingChannel
from core.emotion.reader import FakeEmotionReader
from core.errors import BackendError
from core.generation.models import embedded_gguf
from core.generation.openai_engine import OpenAIGenerator
from core.memory.longterm import FakeEmbedder
from core.settings import BotProfile, GenerationSettings, Settings
from core.types import ChatMessage, Role


@dataclass
class FakeServer:
    words: list[str] = field(default_factory=lambda: ["Hello", " there", "!"])
    status: int = 200
    stall: float = 0.0
    requests: list[dict[str, Any]] = field(default_factory=list)
    headers: list[dict[str, str]] = field(default_factory=list)
    url: str = ""

    async def completions(self, request: web.Request) -> web.StreamResponse:
        self.requests.append(await request.json())
        self.headers.append(dict(request.headers))
        if self.status != 200:
            return web.json_response({"error": {"message": "model exploded"}}, status=self.status)
        await asyncio.sleep(self.stall)
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        for word in self.words:
            chunk = {
                "id": "c1",
                "object": "chat.completion.chunk",
                "created": 0,
                "model": "m",
                "choices": [{"index": 0, "delta": {"content": word}, "finish_reason": None}],
            }
            await response.write(f"data: {json.dumps(chunk)}\n\n".encode())
        await response.write(b"data: [DONE]\n\n")
        return response


@pytest.fixture
async def server() -> AsyncIterator[FakeServer]:
    fake = FakeServer()
    app = web.Application()
    app.router.add_post("/v1/chat/completions", fake.completions)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    fake.url = f"http://127.0.0.1:{port}/v1"
    yield fake
    await runner.cleanup()


PROMPT = [ChatMessage(Role.SYSTEM, "be kind"), ChatMessage(Role.USER, "hi")]
PARAMS = GenerationSettings(max_new_tokens=20, temperature=0.5, seed=3)


async def started(url: str, **options: Any) -> OpenAIGenerator:
    generator = OpenAIGenerator("tiny", base_url=url, api_key="sk-secret-key-1234", **options)
    await generator.start()
    return generator


async def test_streams_and_sends_the_settings(server: FakeServer) -> None:
    generator = await started(server.url)
    pieces = [p async for p in generator.stream(PROMPT, PARAMS)]
    await generator.close()
    assert pieces == ["Hello", " there", "!"]
    sent = server.requests[0]
    assert sent["model"] == "tiny" and sent["stream"] is True
    assert sent["messages"] == [
        {"role": "system", "content": "be kind"},
        {"role": "user", "content": "hi"},
    ]
    assert sent["max_tokens"] == 20 and sent["temperature"] == 0.5 and sent["seed"] == 3
    assert server.headers[0]["Authorization"] == "Bearer sk-secret-key-1234"


async def test_server_error_is_a_backend_error_without_the_key(server: FakeServer) -> None:
    server.status = 500
    generator = await started(server.url, max_retries=1)
    with pytest.raises(BackendError, match="HTTP 500") as error:
        await generator.generate(PROMPT, PARAMS)
    await generator.close()
    assert "sk-secret" not in str(error.value)
    assert len(server.requests) == 2  # retried once


async def test_unreachable_server() -> None:
    generator = await started("http://127.0.0.1:9/v1", max_retries=0)
    with pytest.raises(BackendError, match="cannot connect"):
        await generator.generate(PROMPT, PARAMS)
    await generator.close()


async def test_timeout(server: FakeServer) -> None:
    server.stall = 2
    generator = await started(server.url, timeout_s=0.2, max_retries=0)
    with pytest.raises(BackendError, match="did not answer"):
        await generator.generate(PROMPT, PARAMS)
    await generator.close()


async def test_a_bot_on_a_dead_server_apologises_and_keeps_serving(
    server: FakeServer, settings: Settings, profile: BotProfile
) -> None:
    remote = profile.model_copy(
        update={
            "model": profile.model.model_copy(
                update={
                    "backend": "openai",
                    "model": "tiny",
                    "base_url": server.url,
                    "max_retries": 0,
                }
            )
        }
    )
    async with await Bot.open(
        settings, remote, embedder=FakeEmbedder(), emotions=FakeEmotionReader()
    ) as bot:
        assert isinstance(bot.generator, OpenAIGenerator)
        ok = await bot.handle(testing.message("hi", user="a"), CollectingChannel())
        assert ok.reply is not None and ok.reply.text == "Hello there!"
        server.status = 503
        down = await bot.handle(testing.message("hi", user="b"), CollectingChannel())
        assert down.reply is not None and down.reply.text == pipeline.APOLOGY
        server.status = 200
        again = await bot.handle(testing.message("hi again", user="b"), CollectingChannel())
        assert again.reply is not None and again.reply.text == "Hello there!"
        await bot.handle(testing.message("mail me: b@example.org", user="c"), CollectingChannel())
        assert "b@example.org" not in json.dumps(server.requests[-1])
        assert "mail me: [email]" in json.dumps(server.requests[-1])
        # b's first message was kept although it was never answered
        assert [m["content"] for m in server.requests[-2]["messages"][1:]] == ["hi", "hi again"]


def test_token_estimate_is_conservative() -> None:
    """The remote model's tokenizer is unknown, so a prompt's estimate must not fall
    short of a real one: checked against the embedded chat model's BPE tokenizer and its
    ChatML template on real conversations (1.08-1.19x measured; a short line alone can
    be under by a third, which the per-message allowance covers)."""
    import llama_cpp

    generator = OpenAIGenerator("m", base_url="http://127.0.0.1:9/v1")
    assert generator.count_text("abcdefghi") == 3
    # a prompt is its messages' text, each message's template and the generation prompt
    assert generator.count_tokens(PROMPT) == (3 + 4) + (1 + 4) + 4
    vocabulary = llama_cpp.Llama(str(embedded_gguf().path), vocab_only=True, verbose=False)

    def real(messages: list[ChatMessage]) -> int:
        chatml = "".join(f"<|im_start|>{m.role.value}\n{m.content}<|im_end|>\n" for m in messages)
        prompt = (chatml + "<|im_start|>assistant\n").encode()
        return len(vocabulary.tokenize(prompt, add_bos=False, special=True))

    with (Path(__file__).parents[1] / "data" / "persona_chat_sample.csv").open() as file:
        conversations = [row["Best Generated Conversation"] for row in csv.DictReader(file)]
    assert len(conversations) >= 4
    for conversation in conversations:
        said = [line.split(": ", 1)[1] for line in conversation.splitlines() if ": " in line]
        messages = [ChatMessage(Role.SYSTEM, "You are Sol, a friendly companion.")] + [
            ChatMessage(Role.USER if i % 2 == 0 else Role.ASSISTANT, text)
            for i, text in enumerate(said)
        ]
        assert generator.count_tokens(messages) >= real(messages)
