"""The built-in plugins, tested the way a plugin author would: with the shipped test kit."""

from __future__ import annotations

import contextlib
import sqlite3
from pathlib import Path

import pytest

from core import testing
from core.generation.fake import FakeGenerator
from core.memory.longterm import SentenceEmbedder
from core.plugins.host import builtin_names
from core.settings import PROJECT_BOTS_DIR, load_profile
from core.types import PlaceKind
from plugins.reminders import parse_delay


# --- help --------------------------------------------------------------------------------
async def test_help_lists_every_running_plugins_commands(tmp_path: Path) -> None:
    async with testing.open_bot(tmp_path, plugins=["help", "reminders", "persona"]) as bot:
        listing = await testing.FakeAdapter(bot).say("/help")
    for usage in ("/remind <when> <what...>", "/reminders", "/persona [name]", "/privacy"):
        assert usage in listing


# --- privacy -----------------------------------------------------------------------------
async def test_privacy_counts_what_plugins_keep(tmp_path: Path) -> None:
    async with testing.open_bot(tmp_path, plugins=["reminders"]) as bot:
        chat = testing.FakeAdapter(bot)
        await chat.say("/remind 2h call mum")
        answer = await chat.say("/privacy")
    assert "1 entries kept by plugins" in answer


# --- persona -----------------------------------------------------------------------------
async def test_admins_switch_the_persona_of_one_channel(tmp_path: Path) -> None:
    generator = FakeGenerator()
    async with testing.open_bot(
        tmp_path, plugins=["persona"], admins=["root"], generator=generator
    ) as bot:
        chat = testing.FakeAdapter(bot)
        assert "Only an admin" in await chat.say("/persona tutor", channel="study")
        assert "tutor" in await chat.say("/persona tutor", user="root", channel="study")
        await chat.say("explain fractions", channel="study")
        assert generator.prompts[-1][0].content.startswith("You are Tam, a patient tutor")
        await chat.say("hello", channel="lounge")
        assert generator.prompts[-1][0].content.startswith("You are Sol")
        assert "Persona here: tutor" in await chat.say("/persona", channel="study")
        assert "no profile called 'pirate'" in await chat.say(
            "/persona pirate", user="root", channel="study"
        )
        await chat.say("/persona default", user="root", channel="study")
        await chat.say("and now?", channel="study")
        assert generator.prompts[-1][0].content.startswith("You are Sol")


# --- reminders -----------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("2h", 7200),
        ("30 min", 1800),
        ("an hour", 3600),
        ("1.5 days", 129600),
        ("10s", 10),
        ("tomorrow", None),
        ("2 parsecs", None),
    ],
)
def test_delays_are_read_in_words_and_short_forms(text: str, seconds: float | None) -> None:
    assert parse_delay(text) == seconds


async def test_a_reminder_asked_in_words_is_delivered_where_it_was_asked(tmp_path: Path) -> None:
    async with testing.open_bot(tmp_path, plugins=["reminders"]) as bot:
        chat = testing.FakeAdapter(bot)
        answer = await chat.say("remind me in 1 second to stretch", channel="gym", thread="t1")
        assert answer == "OK, I'll remind you in 1 second: stretch"
        await chat.wait_sent()
    ((place, text),) = chat.sent
    assert (place.channel, place.thread, place.kind) == ("gym", "t1", PlaceKind.GROUP)
    assert text == "⏰ Reminder for Alice: stretch"


async def test_reminders_survive_a_restart_and_are_listed(tmp_path: Path) -> None:
    async with testing.open_bot(tmp_path, plugins=["reminders"]) as bot:
        chat = testing.FakeAdapter(bot)
        assert "in 2 seconds" in await chat.say("/remind 2s drink water")
        assert "in 2 hours" in await chat.say("/remind 2h call mum")
        listing = await chat.say("/reminders")
        assert listing.index("drink water") < listing.index("call mum")
        database = bot.settings.database_path
    # 2.1 s pass while the bot is down: every reminder's time comes 2.1 s closer
    with contextlib.closing(sqlite3.connect(database)) as db, db:
        db.execute("UPDATE plugin_data SET due_at = due_at - 2.1 WHERE due_at IS NOT NULL")
    async with testing.open_bot(tmp_path, plugins=["reminders"]) as bot:
        chat = testing.FakeAdapter(bot)
        await chat.wait_sent()
        assert [text for _, text in chat.sent] == ["⏰ Reminder for Alice: drink water"]
        assert "call mum" in await chat.say("/reminders")


async def test_forget_erases_reminders_and_opted_out_people_get_none(tmp_path: Path) -> None:
    async with testing.open_bot(tmp_path, plugins=["reminders"]) as bot:
        chat = testing.FakeAdapter(bot)
        await chat.say("/remind 1h call mum")
        await chat.say("/forget confirm")
        assert await chat.say("/reminders") == "You have no reminders waiting."
        await chat.say("/optout")
        assert "opted out" in await chat.say("remind me in 5 minutes to stretch")
        assert "When should I remind you?" in await chat.say("/remind soon call")


# --- knowledge ---------------------------------------------------------------------------
def shop_profile(tmp_path: Path) -> Path:
    bots = tmp_path / "bots"
    (bots / "shop" / "knowledge").mkdir(parents=True)
    (bots / "shop" / "bot.toml").write_text('persona = "You are the shop assistant."\n')
    (bots / "shop" / "knowledge" / "faq.md").write_text(
        "# Opening hours\nThe shop opens at nine and closes at six, Monday to Saturday.\n\n"
        "# Returns\nYou can return shoes within thirty days with the receipt.\n"
    )
    return bots


async def test_knowledge_gives_the_model_matching_passages_with_their_source(
    tmp_path: Path,
) -> None:
    generator = FakeGenerator()
    profile = load_profile(shop_profile(tmp_path), "shop")
    async with testing.open_bot(
        tmp_path,
        profile=profile,
        plugins=["knowledge"],
        plugin_settings={"knowledge": {"top_k": 1, "min_similarity": 0.2}},
        generator=generator,
    ) as bot:
        chat = testing.FakeAdapter(bot)
        await chat.say("can I return shoes?")
        system = generator.prompts[-1][0].content
        assert "[faq.md#Returns]" in system and "thirty days" in system
        assert "Opening hours" not in system
        sources = await chat.say("/sources opening hours")
        assert sources.startswith("- [faq.md#Opening hours]")


@pytest.mark.model
async def test_knowledge_with_the_real_embedder_finds_the_companions_document(
    tmp_path: Path,
) -> None:
    generator = FakeGenerator()
    async with testing.open_bot(
        tmp_path,
        plugins=["knowledge"],
        generator=generator,
        embedder=SentenceEmbedder("embedded"),
    ) as bot:
        chat = testing.FakeAdapter(bot)
        sources = await chat.say("/sources how can I delete everything you stored about me?")
        assert sources.startswith("- [about-sol.md#What Sol keeps about you]")
        await chat.say("What is the weather like on Mars?")
        assert "Passages from the documents" not in generator.prompts[-1][0].content


def test_the_companion_profile_runs_every_built_in_plugin() -> None:
    """The README says the companion shows every built-in plugin: a new one must be added."""
    profile = load_profile(PROJECT_BOTS_DIR, "companion")
    assert set(profile.plugins) == set(builtin_names()) and len(profile.plugins) >= 6


# --- moderation --------------------------------------------------------------------------
async def test_blocked_words_are_not_answered_and_the_author_is_told_privately(
    tmp_path: Path,
) -> None:
    settings = {"moderation": {"blocked_words": ["spoiler"]}}
    async with testing.open_bot(tmp_path, plugins=["moderation"], plugin_settings=settings) as bot:
        chat = testing.FakeAdapter(bot)
        assert await chat.say("big SPOILER: he dies", channel="films") == ""
        assert "blocked" in chat.last.whispers[0]
        assert chat.last.replies == []
        assert await chat.say("spoilers are fine as a different word", channel="films") != ""
        history = await testing.history(bot, testing.message("", channel="films"))
    assert all("he dies" not in t.text for t in history)  # not stored either


async def test_a_flood_is_stopped_with_one_private_notice(tmp_path: Path) -> None:
    settings = {"moderation": {"flood_messages": 3, "flood_seconds": 60}}
    async with testing.open_bot(tmp_path, plugins=["moderation"], plugin_settings=settings) as bot:
        chat = testing.FakeAdapter(bot)
        answers, whispers = [], []
        for n in range(6):
            answers.append(await chat.say(f"message {n}"))
            whispers += chat.last.whispers
        assert answers[:3] == ["echo: message 0", "echo: message 1", "echo: message 2"]
        assert answers[3:] == ["", "", ""]
        assert len(whispers) == 1 and "faster than I can answer" in whispers[0]
        assert await chat.say("hello", user="bob") == "echo: hello"  # others are unaffected
