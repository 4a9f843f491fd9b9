from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator, Sequence

import pytest

from core import pipeline, testing
from core.bot import Bot
from core.channel import CollectingChannel
from core.emotion.reader import FakeEmotionReader
from core.generation.fake import FakeGenerator
from core.memory.longterm import FakeEmbedder
from core.settings import BotProfile, GenerationSettings, Settings
from core.turn import TurnResult
from core.types import ChatMessage, Message, Place, PlaceKind, Role, Speaker


async def say(
    bot: Bot, text: str, user: str = "alice", channel: str | None = None
) -> tuple[TurnResult, CollectingChannel]:
    sink = CollectingChannel()
    result = await bot.handle(testing.message(text, user=user, channel=channel), sink)
    return result, sink


async def test_a_command_is_answered_before_the_message_is_read(
    bot: Bot, fake: FakeGenerator
) -> None:
    """route comes before perceive and recall: a command costs no model, no emotion
    reading and no embedding, and leaves nothing in the conversation's history."""
    assert bot.emotions is not None and bot.memory is not None
    reader, embedder = bot.emotions.reader, bot.memory.embedder
    assert isinstance(reader, FakeEmotionReader) and isinstance(embedder, FakeEmbedder)
    result, _ = await say(bot, "/help")
    assert result.ended == "command /help" and result.reply is not None
    assert fake.prompts == [] and reader.calls == [] and embedder.calls == 0
    result, _ = await say(bot, "hello")  # the positive control: a message is read
    assert len(fake.prompts) == 1 and reader.calls == [["hello"]] and embedder.calls >= 1


async def test_reply_is_streamed_then_sent(bot: Bot) -> None:
    result, sink = await say(bot, "hello there friend")
    assert result.reply is not None and result.reply.text == "echo: hello there friend"
    assert "".join(sink.pieces) == "echo: hello there friend"
    assert sink.replies == [result.reply] and sink.typing_count == 1
    assert result.ended is None


async def test_second_turn_sees_the_first_exchange(bot: Bot, fake: FakeGenerator) -> None:
    await say(bot, "my cat is called Miso")
    await say(bot, "what is my cat called?")
    prompt = fake.prompts[-1]
    assert [m.role for m in prompt] == [Role.SYSTEM, Role.USER, Role.ASSISTANT, Role.USER]
    assert prompt[1].content == "my cat is called Miso"
    assert prompt[2].content == "echo: my cat is called Miso"
    assert prompt[0].content == bot.profile.persona


async def test_conversations_do_not_share_context(bot: Bot, fake: FakeGenerator) -> None:
    await say(bot, "secret plans", user="alice")
    await say(bot, "hi", user="bob")
    assert [m.content for m in fake.prompts[-1][1:]] == ["hi"]  # bob's prompt: his own only
    await say(bot, "and?", user="alice")  # the positive control: alice's does hold it
    assert "secret plans" in [m.content for m in fake.prompts[-1]]


async def test_group_context_names_speakers(bot: Bot, fake: FakeGenerator) -> None:
    await say(bot, "I like tea", user="alice", channel="lounge")
    await say(bot, "and I like coffee", user="bob", channel="lounge")
    contents = [m.content for m in fake.prompts[-1][1:]]
    assert contents == ["Alice: I like tea", "echo: Alice: I like tea", "Bob: and I like coffee"]


async def test_a_group_can_keep_a_conversation_per_person(
    settings: Settings, profile: BotProfile
) -> None:
    groups = profile.groups.model_copy(update={"context": "person"})
    fake = FakeGenerator()
    async with testing.open_bot(
        settings.data_dir,
        settings=settings,
        profile=profile.model_copy(update={"groups": groups}),
        generator=fake,
    ) as bot:
        await say(bot, "I like tea", user="alice", channel="lounge")
        await say(bot, "and I like coffee", user="bob", channel="lounge")
        # bob's window holds his own turns only
        assert [m.content for m in fake.prompts[-1][1:]] == ["Bob: and I like coffee"]
        await say(bot, "green tea mostly", user="alice", channel="lounge")
        assert [m.content for m in fake.prompts[-1][1:]] == [
            "Alice: I like tea",
            "echo: Alice: I like tea",
            "Alice: green tea mostly",
        ]
        # /reset starts only the speaker's conversation afresh
        await say(bot, "/reset", user="bob", channel="lounge")
        await say(bot, "still tea", user="alice", channel="lounge")
        assert "Alice: green tea mostly" in [m.content for m in fake.prompts[-1]]
        await say(bot, "hi again", user="bob", channel="lounge")
        assert [m.content for m in fake.prompts[-1][1:]] == ["Bob: hi again"]
        # /why answers from the speaker's own conversation
        result, _ = await say(bot, "/why", user="bob", channel="lounge")
        assert result.reply is not None and "hi again" in result.reply.text
        # another channel, and DMs, are still conversations of their own
        await say(bot, "elsewhere", user="alice", channel="garden")
        assert [m.content for m in fake.prompts[-1][1:]] == ["Alice: elsewhere"]


async def test_reply_is_durable_before_it_is_sent(bot: Bot) -> None:
    seen: list[list[str]] = []

    class Checking(CollectingChannel):
        async def send(self, reply) -> None:  # type: ignore[no-untyped-def]
            turns = await testing.history(bot, testing.message("", user="carol"))
            seen.append([t.text for t in turns])
            await super().send(reply)

    await bot.handle(testing.message("remember me", user="carol"), Checking())
    assert seen == [["remember me", "echo: remember me"]]


async def test_messages_from_bots_are_ignored(bot: Bot, fake: FakeGenerator) -> None:
    message = Message(
        Speaker("console", "otherbot", is_bot=True), Place("console", "c", PlaceKind.GROUP), "hi"
    )
    sink = CollectingChannel()
    result = await bot.handle(message, sink)
    assert result.reply is None and result.ended == "message from a bot"
    assert sink.replies == [] and fake.prompts == []


@pytest.mark.parametrize(
    ("answer", "text", "mentioned", "answered"),
    [
        ("mention", "hello everyone", False, False),
        ("mention", "hello Sol", True, True),
        ("mention", "/help", False, True),
        ("keyword", "hey sol, how are you", False, True),
        ("keyword", "solar panels are cheap now", False, False),
        ("keyword", "hello everyone", False, False),
        ("always", "hello everyone", False, True),
    ],
)
async def test_group_messages_are_answered_as_the_profile_says(
    settings: Settings,
    profile: BotProfile,
    answer: str,
    text: str,
    mentioned: bool,
    answered: bool,
) -> None:
    groups = profile.groups.model_copy(update={"answer": answer, "keywords": ("sol",)})
    profile = profile.model_copy(update={"groups": groups})
    async with testing.open_bot(settings.data_dir, profile=profile, settings=settings) as bot:
        group = await testing.say(bot, text, channel="lounge", mentions_bot=mentioned)
        private = await testing.say(bot, text)
    assert (group.reply is not None) is answered
    if not answered:
        assert group.ended == "not addressed to the bot"
    assert private.reply is not None  # direct messages are always answered


async def test_other_bots_are_answered_only_when_the_profile_allows(
    settings: Settings, profile: BotProfile
) -> None:
    message = Message(
        Speaker("console", "otherbot", is_bot=True),
        Place("console", "c", PlaceKind.GROUP),
        "hi",
        mentions_bot=True,
    )
    groups = profile.groups.model_copy(update={"answer_bots": True})
    profile = profile.model_copy(update={"groups": groups})
    async with testing.open_bot(settings.data_dir, profile=profile, settings=settings) as bot:
        result = await bot.handle(message, CollectingChannel())
    assert result.reply is not None and result.reply.text == "echo: otherbot: hi"


async def test_empty_and_control_only_messages_are_dropped(bot: Bot, fake: FakeGenerator) -> None:
    for text in ("", "   \n", "\x00\x07"):
        result, sink = await say(bot, text)
        assert result.reply is None and sink.replies == []
    assert fake.prompts == []


async def test_huge_message_gets_a_clear_refusal(bot: Bot, fake: FakeGenerator) -> None:
    result, _ = await say(bot, "x" * (bot.settings.max_message_chars + 1))
    assert result.reply is not None and "too long" in result.reply.text
    assert fake.prompts == []
    assert await testing.history(bot, testing.message("", user="alice")) == []


async def test_message_over_token_budget_is_refused(bot: Bot, fake: FakeGenerator) -> None:
    words = " ".join(["word"] * (bot.profile.context.budget_tokens + 10))
    result, _ = await say(bot, words)
    assert result.reply is not None and "split it up" in result.reply.text
    assert fake.prompts == []


async def test_text_is_normalised_before_use(bot: Bot, fake: FakeGenerator) -> None:
    await say(bot, "  cafe\u0301 \x00 ok  ")
    assert fake.prompts[-1][-1].content == "café  ok"


async def test_dead_backend_gets_an_apology_and_keeps_the_message(
    settings: Settings, profile: BotProfile, caplog: pytest.LogCaptureFixture
) -> None:
    async with testing.open_bot(
        settings.data_dir, settings=settings, profile=profile, generator=FakeGenerator(fail=True)
    ) as bot:
        result, sink = await say(bot, "are you there?")
        assert result.reply is not None and result.reply.failed
        assert result.reply.text == pipeline.APOLOGY and sink.replies == [result.reply]
        history = await testing.history(bot, testing.message("", user="alice"))
        assert [t.text for t in history] == ["are you there?"]
    assert "backend failed" in caplog.text


async def test_slow_backend_times_out(
    settings: Settings, profile: BotProfile, caplog: pytest.LogCaptureFixture
) -> None:
    slow = profile.model_copy(
        update={"model": profile.model.model_copy(update={"timeout_s": 0.05})}
    )
    async with testing.open_bot(
        settings.data_dir, settings=settings, profile=slow, generator=FakeGenerator(delay=0.2)
    ) as bot:
        result, _ = await say(bot, "hello")
    assert result.reply is not None and result.reply.failed
    assert result.reply.text == pipeline.APOLOGY
    # the timeout path itself, not any other failure
    assert "fake backend gave no full reply in 0.05 s" in caplog.text


async def test_empty_model_output_is_a_failure(settings: Settings, profile: BotProfile) -> None:
    async with testing.open_bot(
        settings.data_dir,
        settings=settings,
        profile=profile,
        generator=FakeGenerator(lambda m: "  "),
    ) as bot:
        result, _ = await say(bot, "hello")
        assert result.reply is not None and result.reply.text == pipeline.APOLOGY


async def test_crashing_channel_does_not_break_the_bot(bot: Bot) -> None:
    class Broken(CollectingChannel):
        async def stream(self, piece: str) -> None:
            raise RuntimeError("socket closed")

    result = await bot.handle(testing.message("hi", user="dave"), Broken())
    assert result.reply is not None and result.reply.failed
    ok, _ = await say(bot, "still there?", user="erin")
    assert ok.reply is not None and not ok.reply.failed


async def test_generator_exception_is_contained(settings: Settings, profile: BotProfile) -> None:
    class Exploding(FakeGenerator):
        async def stream(
            self, messages: Sequence[ChatMessage], params: GenerationSettings
        ) -> AsyncIterator[str]:
            raise ZeroDivisionError("boom")
            yield ""

    async with testing.open_bot(
        settings.data_dir, settings=settings, profile=profile, generator=Exploding()
    ) as bot:
        result, _ = await say(bot, "hello")
        assert result.reply is not None and result.reply.text == pipeline.APOLOGY


async def test_help_and_unknown_commands_skip_the_model(bot: Bot, fake: FakeGenerator) -> None:
    result, _ = await say(bot, "/help")
    assert result.reply is not None and "/reset" in result.reply.text
    result, _ = await say(bot, "/help@companion_bot")
    assert result.reply is not None and "/reset" in result.reply.text
    result, _ = await say(bot, "/frobnicate now")
    assert result.reply is not None and "/frobnicate" in result.reply.text
    assert fake.prompts == []


async def test_reset_starts_the_context_afresh(bot: Bot, fake: FakeGenerator) -> None:
    await say(bot, "old topic")
    await say(bot, "/reset")
    await say(bot, "new topic")
    assert [m.content for m in fake.prompts[-1][1:]] == ["new topic"]


def test_tidy_drops_a_cut_sentence() -> None:
    assert (
        pipeline.tidy(" I'm sorry. That sounds hard. Maybe we ") == "I'm sorry. That sounds hard."
    )
    assert pipeline.tidy("Congratulations!") == "Congratulations!"
    assert pipeline.tidy("ok so") == "ok so"


async def test_turns_of_one_conversation_run_in_order(
    settings: Settings, profile: BotProfile
) -> None:
    fake = FakeGenerator(delay=0.01)
    async with testing.open_bot(
        settings.data_dir, settings=settings, profile=profile, generator=fake
    ) as bot:
        results = await asyncio.gather(*(say(bot, f"message {i}") for i in range(8)))
        texts = [r.reply.text for r, _ in results if r.reply]
        assert texts == [f"echo: message {i}" for i in range(8)]
        # each prompt saw every earlier exchange: strictly sequential
        for i, prompt in enumerate(fake.prompts):
            assert len(prompt) == 2 + 2 * i


class Rendezvous(FakeGenerator):
    """Answers only once ``expected`` replies are being generated at the same time: with
    conversations run one after another it would never answer."""

    def __init__(self, expected: int) -> None:
        super().__init__()
        self.expected = expected
        self.inside = 0
        self.everyone_in = asyncio.Event()

    async def stream(
        self, messages: Sequence[ChatMessage], params: GenerationSettings
    ) -> AsyncIterator[str]:
        self.inside += 1
        if self.inside == self.expected:
            self.everyone_in.set()
        await self.everyone_in.wait()
        async for piece in super().stream(messages, params):
            yield piece


async def test_conversations_run_concurrently(settings: Settings, profile: BotProfile) -> None:
    rendezvous = Rendezvous(10)
    async with testing.open_bot(
        settings.data_dir, settings=settings, profile=profile, generator=rendezvous
    ) as bot:
        async with asyncio.timeout(30):  # never, if they ran one after another
            results = await asyncio.gather(*(say(bot, "hi", user=f"user{i}") for i in range(10)))
    assert [r.reply.text for r, _ in results if r.reply] == ["echo: hi"] * 10


async def test_a_long_conversation_reads_only_the_turns_its_window_can_use(
    settings: Settings, profile: BotProfile, monkeypatch: pytest.MonkeyPatch
) -> None:
    """recall reads the turns since the last reply's window began, not the last 200:
    the prompts are exactly those that reading all 200 gives."""
    small = profile.model_copy(
        update={
            "context": profile.context.model_copy(update={"budget_tokens": 220}),
            "memory": profile.memory.model_copy(update={"summarize": False, "top_k": 0}),
        }
    )
    said = [f"message {n} " + "and more words " * (n % 5) for n in range(60)]

    async def converse(data: str) -> tuple[list[tuple[ChatMessage, ...]], int]:
        fake = FakeGenerator()
        where = settings.model_copy(update={"data_dir": settings.data_dir / data})
        async with testing.open_bot(
            where.data_dir, settings=where, profile=small, generator=fake
        ) as bot:
            for text in said:
                await say(bot, text)
            sample = testing.message("", user="alice")
            scope = bot.store.privacy.scope(sample)
            read = await bot.store.window_turns(bot.profile.name, sample.place, scope, limit=200)
        return [tuple(p) for p in fake.prompts], len(read)

    prompts, read = await converse("window")

    async def everything(self, bot, place, scope, *, limit):  # type: ignore[no-untyped-def]
        return await self.recent_turns(bot, place, scope, limit=limit)

    monkeypatch.setattr("core.storage.store.Store.window_turns", everything)
    all_prompts, all_read = await converse("all")
    assert prompts == all_prompts
    assert all_read == 120 and read < 40


async def test_a_fold_that_found_too_little_is_not_tried_again_until_the_window_moves(
    settings: Settings, profile: BotProfile
) -> None:
    small = profile.model_copy(
        update={
            "context": profile.context.model_copy(update={"budget_tokens": 320}),
            "memory": profile.memory.model_copy(update={"summarize_after": 4}),
        }
    )
    async with testing.open_bot(
        settings.data_dir, settings=settings, profile=small, generator=FakeGenerator()
    ) as bot:
        checks: list[tuple[int, bool]] = []
        fold = bot.summaries.fold

        async def watched(*args, **kwargs):  # type: ignore[no-untyped-def]
            folded = await fold(*args, **kwargs)
            checks.append((kwargs["window_start"], folded))
            return folded

        bot.summaries.fold = watched  # type: ignore[method-assign]
        for n in range(40):
            await say(bot, f"message number {n} about my garden " + "word " * 8)
            await bot.settle()
    assert any(folded for _, folded in checks), checks  # it still folds
    assert len(checks) <= 2 * len({start for start, _ in checks}) < 40  # not every turn
    for (start, folded), (later, _) in itertools.pairwise(checks):
        assert folded or later != start
