"""Emotion in the pipeline, with the fake (keyword) reader: what the policy changes."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path

from core import testing
from core.emotion import policy
from core.emotion.labels import Reading
from core.emotion.reader import FakeEmotionReader
from core.generation.fake import FakeGenerator
from core.settings import PROJECT_BOTS_DIR, load_profile


async def test_sadness_gets_guidance_and_calmer_settings(tmp_path: Path) -> None:
    generator = FakeGenerator()
    async with testing.open_bot(tmp_path, generator=generator) as bot:
        result = await testing.say(bot, "I failed my test and I feel awful", user="ann")
    system = generator.prompts[-1][0].content
    assert "acknowledge how they feel" in system
    assert generator.params[-1].temperature <= 0.3 and generator.params[-1].max_new_tokens <= 80
    assert result.reply is not None and result.reply.reaction == "🫂"


async def test_anger_is_met_calmly_without_an_emoji(tmp_path: Path) -> None:
    generator = FakeGenerator()
    async with testing.open_bot(tmp_path, generator=generator) as bot:
        result = await testing.say(bot, "I am so angry at this bot", user="ann")
    assert "do not argue" in generator.prompts[-1][0].content
    assert result.reply is not None and result.reply.reaction == ""


async def test_joy_is_shared_and_neutral_changes_nothing(tmp_path: Path) -> None:
    generator = FakeGenerator()
    profile = load_profile(PROJECT_BOTS_DIR, "companion")
    async with testing.open_bot(tmp_path, generator=generator, profile=profile) as bot:
        happy = await testing.say(bot, "I got the job, I am so happy", user="ann")
        assert "Share in their joy" in generator.prompts[-1][0].content
        plain = await testing.say(bot, "the bus leaves at nine", user="bob")
    assert happy.reply is not None and happy.reply.reaction == "🎉"
    assert generator.prompts[-1][0].content == profile.persona.strip()
    assert generator.params[-1] == profile.generation
    assert plain.reply is not None and plain.reply.reaction == ""


async def test_a_low_trajectory_asks_for_a_check_in(tmp_path: Path) -> None:
    generator = FakeGenerator()
    async with testing.open_bot(tmp_path, generator=generator) as bot:
        await testing.say(bot, "I feel sad today", user="ann")
        assert "low for a while" not in generator.prompts[-1][0].content
        await testing.say(bot, "still sad, and lonely", user="ann")
        await testing.say(bot, "I cry a lot", user="ann")
        assert "low for a while" in generator.prompts[-1][0].content
        # bob in a group channel does not inherit ann's private trajectory
        await testing.say(bot, "the weather is sad", user="bob", channel="general")
        assert "low for a while" not in generator.prompts[-1][0].content


async def test_the_policy_can_be_switched_off(tmp_path: Path) -> None:
    generator = FakeGenerator()
    profile = load_profile(PROJECT_BOTS_DIR, "companion")
    off = profile.model_copy(
        update={"emotion": profile.emotion.model_copy(update={"policy": False})}
    )
    async with testing.open_bot(tmp_path, generator=generator, profile=off) as bot:
        result = await testing.say(bot, "I feel awful and sad", user="ann")
        data = await bot.emotion_history.trajectory(
            bot.store.privacy.scope(testing.message("", user="ann")),
            bot.store.privacy.user_key("test", "ann"),
        )
    assert generator.prompts[-1][0].content == profile.persona.strip()
    assert result.reply is not None and result.reply.reaction == ""
    assert [r.ekman for r in data.readings] == ["sadness"]  # still read and kept


class GatedReader(FakeEmotionReader):
    """Holds its first batch until the test opens the gate, so that the texts that arrive
    meanwhile queue up, as they do behind a real classifier's forward pass."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = asyncio.Event()
        self.first: list[str] | None = None

    async def read(self, texts: Sequence[str]) -> list[Reading]:
        if self.first is None:
            self.first = list(texts)
            await self.gate.wait()
        return await super().read(texts)


async def test_concurrent_messages_are_read_in_batches(tmp_path: Path) -> None:
    reader = GatedReader()
    async with testing.open_bot(tmp_path, emotions=reader) as bot:
        batcher = bot.emotions
        assert batcher is not None
        said = asyncio.gather(*(testing.say(bot, f"hello {i}", user=f"u{i}") for i in range(8)))
        # every text not in the first batch is waiting for the next one
        await testing.until(
            lambda: reader.first is not None and batcher.pending == 8 - len(reader.first)
        )
        reader.gate.set()
        await said
    assert reader.first is not None
    rest = 8 - len(reader.first)
    assert batcher.batches == ([len(reader.first), rest] if rest else [8])
    read = sorted(t for call in reader.calls for t in call)
    assert read == sorted(f"hello {i}" for i in range(8))


class PoisonReader(GatedReader):
    """Fails on any batch that holds a text with "poison" in it (as the real tokenizer
    once failed a whole batch on one person's lone surrogate)."""

    async def read(self, texts: Sequence[str]) -> list[Reading]:
        if any("poison" in text for text in texts):
            raise ValueError("cannot read that")
        return await super().read(texts)


async def test_one_text_that_cannot_be_read_fails_no_one_elses_turn(tmp_path: Path) -> None:
    reader = PoisonReader()
    texts = [f"I am so sad {i}" for i in range(7)] + ["poison"]
    async with testing.open_bot(tmp_path, emotions=reader) as bot:
        batcher = bot.emotions
        assert batcher is not None
        first = asyncio.ensure_future(testing.say(bot, texts[0], user="u0"))
        await testing.until(lambda: reader.first is not None)  # held: the others queue up
        rest = asyncio.gather(
            *(testing.say(bot, text, user=f"u{i}") for i, text in enumerate(texts) if i)
        )
        await testing.until(lambda: batcher.pending == 7)
        reader.gate.set()
        results = [await first, *await rest]
        stored = await testing.history(bot, testing.message("", user="u7"))
    assert batcher.batches[:2] == [1, 7]  # the poison shared a batch with six others
    # everyone is answered by the model, the unreadable one too (without a reading)
    assert all(r.reply is not None and not r.reply.failed for r in results)
    assert results[7].reply is not None and results[7].reply.text == "echo: poison"
    assert [t.text for t in stored] == ["poison", "echo: poison"]
    # every other text was read (the reader records only the reads that succeeded)
    assert sorted(t for call in reader.calls for t in call) == sorted(texts[:7])
    assert all(r.reply is not None and r.reply.reaction for r in results[:7])  # sad, read


async def test_a_lone_surrogate_is_answered_and_stored(tmp_path: Path) -> None:
    """A browser can send "\\ud800", which UTF-8 (the database, tokenizers) refuses."""
    async with testing.open_bot(tmp_path) as bot:
        result = await testing.say(bot, "hi \ud800 there", user="ann", name="Ann \udfff")
        other = await testing.say(bot, "hello", user="bob")
        stored = await testing.history(bot, testing.message("", user="ann"))
    assert result.reply is not None and result.reply.text == "echo: hi \ufffd there"
    assert other.reply is not None and other.reply.text == "echo: hello"
    assert [t.text for t in stored] == ["hi \ufffd there", "echo: hi \ufffd there"]
    assert stored[0].display_name == "Ann \ufffd"


async def test_why_shows_the_reading(tmp_path: Path) -> None:
    async with testing.open_bot(tmp_path) as bot:
        await testing.say(bot, "I am scared of the exam", user="ann")
        why = await testing.say(bot, "/why", user="ann")
    assert why.reply is not None
    assert "how your message read to me: fear (fear 90%" in why.reply.text


async def test_missing_classifier_weights_turn_emotion_off(tmp_path: Path) -> None:
    from core.emotion.classifier import EmotionClassifier

    generator = FakeGenerator()
    missing = EmotionClassifier(tmp_path / "no-weights-here")
    async with testing.open_bot(tmp_path, generator=generator, emotions=missing) as bot:
        assert bot.emotions is None
        result = await testing.say(bot, "I feel awful", user="ann")
    assert result.reply is not None and result.reply.text == "echo: I feel awful"


def test_distress_among_the_labels_outranks_surprise() -> None:
    from core.emotion.history import Trajectory
    from core.emotion.labels import LABELS, reading_from
    from core.settings import EmotionSettings, GenerationSettings

    probabilities = [0.01] * len(LABELS)
    probabilities[LABELS.index("surprise")] = 0.8
    probabilities[LABELS.index("anger")] = 0.6
    reading = reading_from(probabilities, [0.5] * len(LABELS))
    assert reading.ekman == "surprise"  # the classifier's own summary
    decision = policy.decide(reading, Trajectory(()), GenerationSettings(), EmotionSettings())
    assert "do not argue" in decision.guidance and decision.params.temperature <= 0.3


async def test_distress_replies_begin_with_an_acknowledgement_the_model_continues(
    tmp_path: Path,
) -> None:
    generator = FakeGenerator(lambda _: "Do you want to talk about it?")
    async with testing.open_bot(tmp_path, generator=generator) as bot:
        sad = await testing.say(bot, "I feel so lonely tonight", user="ann")
        prompt = generator.prompts[-1]
        angry = await testing.say(bot, "this is so annoying and I am furious", user="bob")
        plain = await testing.say(bot, "the bus leaves at nine", user="cy")
    opening = policy.OPENINGS["sadness"]
    assert prompt[-1].role.value == "assistant" and prompt[-1].content == opening
    assert sad.reply is not None
    assert sad.reply.text == f"{opening} Do you want to talk about it?"
    assert angry.reply is not None and angry.reply.text.startswith(policy.OPENINGS["anger"])
    assert plain.reply is not None and plain.reply.text == "Do you want to talk about it?"


async def test_openings_are_configurable_and_skipped_where_the_engine_cannot_continue(
    tmp_path: Path,
) -> None:
    profile = load_profile(PROJECT_BOTS_DIR, "companion")
    own = profile.emotion.model_copy(update={"openings": {"sadness": "Oh no."}})
    generator = FakeGenerator(lambda _: "Tell me more.")
    async with testing.open_bot(
        tmp_path, generator=generator, profile=profile.model_copy(update={"emotion": own})
    ) as bot:
        mine = await testing.say(bot, "I feel sad", user="ann")
        generator.continues_replies = False  # like an OpenAI-compatible server
        remote = await testing.say(bot, "I feel sad", user="bob")
    assert mine.reply is not None and mine.reply.text == "Oh no. Tell me more."
    assert remote.reply is not None and remote.reply.text == "Tell me more."
    assert generator.prompts[-1][-1].role.value == "user"  # nothing was primed
