"""The llama.cpp engine on the embedded GGUF file: streaming, end of turn, continuing an
opening, several conversations decoded together, prefix reuse, cancellation, "busy"."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from core import testing
from core.errors import BusyError, ConfigError
from core.generation.factory import create_generator, engine_for
from core.generation.llamacpp_engine import (
    BACKGROUND_CHUNK,
    PREFILL_CHUNK,
    LlamaCppGenerator,
    slot_size,
)
from core.generation.models import embedded_gguf
from core.memory.window import budget_for
from core.pipeline import BUSY
from core.settings import BotProfile, GenerationSettings, Settings
from core.types import ChatMessage, Role

pytestmark = pytest.mark.model

GREEDY = GenerationSettings(max_new_tokens=24, temperature=0.0)
CHAT = [
    ChatMessage(Role.SYSTEM, "You are a kind friend."),
    ChatMessage(Role.USER, "I failed my driving test today."),
]


@pytest.fixture
async def engine() -> AsyncIterator[LlamaCppGenerator]:
    generator = LlamaCppGenerator(embedded_gguf().path, parallel=4, queue_limit=1)
    await generator.start()
    try:
        yield generator
    finally:
        await generator.close()


async def collect(
    generator: LlamaCppGenerator, chat: list[ChatMessage], params: GenerationSettings = GREEDY
) -> list[str]:
    return [piece async for piece in generator.stream(chat, params)]


async def test_streams_a_reply_in_the_models_template(engine: LlamaCppGenerator) -> None:
    assert engine.render(CHAT).endswith("<|im_start|>assistant\n")
    assert engine.count_tokens(CHAT) == 27 and engine.count_text("hello there") == 2
    pieces = await collect(engine, CHAT)
    text = "".join(pieces)
    assert len(pieces) > 3 and text.strip()
    assert "<|im_end|>" not in text and "<|im_start|>" not in text
    # The same prompt again: the same greedy reply, and the cached prompt is reused.
    reused = engine.reused_tokens
    assert "".join(await collect(engine, CHAT)) == text
    assert engine.reused_tokens - reused == engine.count_tokens(CHAT) - 1


async def test_a_changed_middle_is_not_read_again(engine: LlamaCppGenerator) -> None:
    """The note before the last message goes and a new one follows the reply: the last
    exchange is moved back in the cache, and only the new note and message are read."""
    note = ChatMessage(Role.SYSTEM, "Earlier, the user told you they have a cat named Tom.")
    first = [*CHAT, ChatMessage(Role.ASSISTANT, "Oh no, I'm sorry."), note]
    first.append(ChatMessage(Role.USER, "I was so nervous that I forgot to look in the mirror."))
    reply = "".join(await collect(engine, first))
    assert reply.strip()
    later = [*first[:3], first[4], ChatMessage(Role.ASSISTANT, reply.strip())]
    later += [ChatMessage(Role.SYSTEM, "They like tea."), ChatMessage(Role.USER, "Any advice?")]
    reused, moved = engine.reused_tokens, engine.moved_tokens
    answer = "".join(await collect(engine, later))
    assert answer.strip() and "<|im_" not in answer
    # the last exchange, less the tokens around the reply's end (its last sampled token
    # and the end-of-turn marker were never fed)
    exchange = engine.count_tokens(later[:5]) - engine.count_tokens(later[:3])
    assert engine.moved_tokens - moved >= exchange - 8
    assert engine.reused_tokens - reused >= engine.count_tokens(later[:5]) - 8


async def test_conversations_that_arrive_together_read_their_common_start_once(
    engine: LlamaCppGenerator,
) -> None:
    """Four conversations with the same persona: the first reads it, the others copy its
    cache instead, and their replies still know what only the persona says."""
    fact = "Your favourite fruit is the mango, and you tell anyone who asks. "
    persona = ChatMessage(Role.SYSTEM, f"You are Sam, a patient and cheerful friend. {fact}" * 2)
    questions = [
        "What is your favourite fruit?",
        "Which fruit do you like best?",
        "Tell me your favourite fruit.",
        "Hi Sam! What fruit do you love most?",
    ]
    shared = engine.shared_tokens
    replies = await asyncio.gather(
        *(collect(engine, [persona, ChatMessage(Role.USER, q)]) for q in questions)
    )
    assert engine.shared_tokens - shared >= 3 * (engine.count_tokens([persona]) - 4)
    # without the persona this model names other fruit (apples, curry): measured
    assert sum("mango" in "".join(reply).lower() for reply in replies) >= 2


async def test_a_prompt_quoting_a_conversation_leaves_its_cache_alone(
    engine: LlamaCppGenerator,
) -> None:
    """A summary's prompt quotes the conversation (long runs of the same tokens): it
    takes another slot, so the conversation's next turn still reads only what is new."""
    told = "I failed my driving test today because I forgot to check the mirror twice."
    chat = [*CHAT[:1], ChatMessage(Role.USER, told)]
    reply = "".join(await collect(engine, chat)).strip()
    summary = [
        ChatMessage(Role.SYSTEM, "Summarise the conversation in one sentence."),
        ChatMessage(Role.USER, f"user: {told}"),
    ]
    await collect(engine, summary)
    later = [*chat, ChatMessage(Role.ASSISTANT, reply), ChatMessage(Role.USER, "Any advice?")]
    reused = engine.reused_tokens
    await collect(engine, later)
    assert engine.reused_tokens - reused >= engine.count_tokens(chat) - 4


async def test_replies_go_before_background_work(tmp_path: Path) -> None:
    generator = LlamaCppGenerator(embedded_gguf().path, parallel=1)
    await generator.start()
    done: list[str] = []

    async def run(name: str, background: bool) -> None:
        await generator.generate(CHAT, GREEDY, background=background)
        done.append(name)

    try:
        first = asyncio.create_task(run("reply 1", False))
        await testing.until(lambda: generator.load()[0] == 1)
        summary = asyncio.create_task(run("summary", True))
        await testing.until(lambda: generator.load()[1] == 1)
        second = asyncio.create_task(run("reply 2", False))
        await testing.until(lambda: generator.load()[1] == 2)
        await asyncio.gather(first, summary, second)
        assert done == ["reply 1", "reply 2", "summary"]  # it came before, it goes last
    finally:
        await generator.close()


async def test_background_work_reads_its_prompt_in_small_steps() -> None:
    # A reply arriving waits only for the step in flight: a summary's long prompt is read
    # BACKGROUND_CHUNK tokens a step, a reply's PREFILL_CHUNK.
    told = " ".join(f"On day {n} we went to the lake and talked." for n in range(40))
    chat = [ChatMessage(Role.SYSTEM, "Summarise."), ChatMessage(Role.USER, told)]
    one = GenerationSettings(max_new_tokens=1, temperature=0.0)
    steps = {}
    for background, chunk in ((True, BACKGROUND_CHUNK), (False, PREFILL_CHUNK)):
        generator = LlamaCppGenerator(embedded_gguf().path, parallel=1)  # an empty cache
        await generator.start()
        try:
            tokens = generator.count_tokens(chat)
            assert tokens > 2 * PREFILL_CHUNK
            await generator.generate(chat, one, background=background)
            assert generator.steps == -(-tokens // chunk)
            steps[background] = generator.steps
        finally:
            await generator.close()
    assert steps[True] >= 4 * steps[False]


async def test_stops_at_the_end_of_its_turn(engine: LlamaCppGenerator) -> None:
    short = [ChatMessage(Role.USER, "Reply with just the word: yes")]
    pieces = await collect(engine, short, GenerationSettings(max_new_tokens=100, temperature=0.0))
    text = "".join(pieces)
    assert 0 < len(pieces) < 100  # ended by the model's end of turn, not by the limit
    assert text.strip() and "<|im_end|>" not in text and "<|im_start|>" not in text


async def test_continues_an_opening(engine: LlamaCppGenerator) -> None:
    opened = [*CHAT, ChatMessage(Role.ASSISTANT, "I'm so sorry.")]
    assert engine.render(opened).endswith("<|im_start|>assistant\nI'm so sorry.")
    text = "".join(await collect(engine, opened))
    # it goes on from the opening: no second opening, no new turn, no template markup
    assert text.strip() and not text.strip().startswith("I'm so sorry")
    assert "<|im_start|>" not in text and not text.lstrip().startswith("assistant")


async def test_conversations_are_decoded_together(engine: LlamaCppGenerator) -> None:
    chats = [[ChatMessage(Role.USER, f"Tell me one fact about the number {n}.")] for n in range(4)]
    params = GenerationSettings(max_new_tokens=16, temperature=0.0)
    steps = engine.steps
    replies = await asyncio.gather(*(collect(engine, chat, params) for chat in chats))
    assert all("".join(r).strip() for r in replies)
    tokens = sum(len(r) for r in replies)
    # One decode step serves all four: far fewer steps than tokens generated.
    assert engine.steps - steps < 0.5 * tokens


async def test_a_stopped_stream_frees_its_place(engine: LlamaCppGenerator) -> None:
    long = GenerationSettings(max_new_tokens=200, temperature=0.0)
    for _ in range(6):  # more than `parallel`: each stop must free its slot
        async for _piece in engine.stream(CHAT, long):
            break
    await testing.until(lambda: engine.load() == (0, 0))  # noticed between two steps
    assert "".join(await collect(engine, CHAT)).strip()  # a place was free for it
    await testing.until(lambda: engine.load() == (0, 0))  # and a finished one frees its own


async def test_past_the_queue_the_answer_is_busy(tmp_path: Path) -> None:
    generator = LlamaCppGenerator(embedded_gguf().path, parallel=1, queue_limit=1)
    long = GenerationSettings(max_new_tokens=400, temperature=0.0)
    async with testing.open_bot(tmp_path, generator=generator) as bot:
        first = asyncio.create_task(collect(generator, CHAT, long))
        await testing.until(lambda: generator.load()[0] == 1)
        second = asyncio.create_task(collect(generator, CHAT, long))  # waits its turn
        await testing.until(lambda: generator.load()[1] == 1)
        with pytest.raises(BusyError):
            await collect(generator, CHAT)
        result = await testing.say(bot, "hello?", user="late")
        assert result.reply is not None and result.reply.text == BUSY
        second.cancel()
        first.cancel()
        await asyncio.gather(first, second, return_exceptions=True)


def test_engine_choice(profile: BotProfile, settings: Settings) -> None:
    def with_model(**fields: object) -> BotProfile:
        return profile.model_copy(update={"model": profile.model.model_copy(update=fields)})

    assert engine_for(with_model(backend="auto")) == "llama.cpp"
    assert engine_for(with_model(backend="auto", adapter="bots/x/adapter")) == "transformers"
    assert engine_for(with_model(backend="auto", model="HuggingFaceTB/SmolLM2-135M")) == (
        "transformers"
    )
    assert isinstance(
        create_generator(with_model(backend="llama.cpp"), settings), LlamaCppGenerator
    )
    with pytest.raises(ConfigError, match="adapter runs on the transformers backend"):
        engine_for(with_model(backend="llama.cpp", adapter="a"))
    with pytest.raises(ConfigError, match="runs GGUF files"):
        create_generator(with_model(backend="llama.cpp", model="some/hf-model"), settings)


def test_slot_sizes() -> None:
    assert slot_size(None, 8192) == 4096 and slot_size(None, 2048) == 2048
    assert slot_size(1784, 8192) == 1792 and slot_size(1792, 8192) == 1792
    assert slot_size(9000, 8192) == 8192
    assert slot_size(100, 0) == 256  # a file that does not say how long it was trained


async def test_a_slot_holds_what_the_profile_sends_and_no_more(
    profile: BotProfile, settings: Settings
) -> None:
    """Moving cached tokens costs a pass over every cell of the cache, so the bot sizes
    slots to its budget (1,536) and the longest reply (a summary's 120), not to 4,096."""
    generator = create_generator(profile, settings)
    assert isinstance(generator, LlamaCppGenerator)
    await generator.start()
    try:
        assert generator.context_window == 1792
        assert generator._ctx.n_ctx() == 1792 * profile.model.parallel
        room = generator.context_window - profile.generation.max_new_tokens
        assert budget_for(generator, profile.context.budget_tokens, 96) == 1536 <= room
    finally:
        await generator.close()
    told = profile.model_copy(
        update={"model": profile.model.model_copy(update={"context_window": 3000})}
    )
    generator = create_generator(told, settings)
    await generator.start()
    try:
        assert generator.context_window == 3000  # the operator's word stands
    finally:
        await generator.close()
