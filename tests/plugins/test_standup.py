"""The tutorial's tests (docs/plugins.md, step 5), run against the tutorial's plugin."""

from __future__ import annotations

from pathlib import Path

from core import testing
from core.generation.fake import FakeGenerator

STANDUP = "tests.plugins.standup"


async def test_notes_are_listed_per_channel(tmp_path: Path) -> None:
    async with testing.open_bot(tmp_path, plugins=[STANDUP]) as bot:
        chat = testing.FakeAdapter(bot)
        assert await chat.say("/standup login page", channel="team") == (
            "Noted. /standups shows everyone's."
        )
        await chat.say("/standup docs", channel="team", user="bob")
        listing = await chat.say("/standups", channel="team")
        assert "- Alice: login page" in listing and "- Bob: docs" in listing
        assert await chat.say("/standups", channel="other") == "Nobody has posted yet today."


async def test_a_wrong_call_gets_the_usage(tmp_path: Path) -> None:
    async with testing.open_bot(tmp_path, plugins=[STANDUP]) as bot:
        assert (await testing.FakeAdapter(bot).say("/standup")).endswith(
            "Usage: /standup <note...>"
        )


async def test_forget_erases_my_notes(tmp_path: Path) -> None:
    async with testing.open_bot(tmp_path, plugins=[STANDUP]) as bot:
        chat = testing.FakeAdapter(bot)
        await chat.say("/standup secret project", channel="team")
        assert "secret project" in await chat.say("/export")
        await chat.say("/forget confirm")
        assert "secret project" not in await chat.say("/export")
        assert await chat.say("/standups", channel="team") == "Nobody has posted yet today."


async def test_the_setting_and_the_hook(tmp_path: Path) -> None:
    generator = FakeGenerator()
    async with testing.open_bot(
        tmp_path,
        plugins=[STANDUP],
        plugin_settings={STANDUP: {"title": "Stand-up"}},
        generator=generator,
    ) as bot:
        chat = testing.FakeAdapter(bot)
        await chat.say("/standup tests", channel="team")
        assert (await chat.say("/standups", channel="team")).startswith("Stand-up:")
        await chat.say("I'm blocked on the review", channel="team")
        assert chat.last.reactions == ["🚧"]
        assert "ask what would help" in generator.prompts[-1][0].content
