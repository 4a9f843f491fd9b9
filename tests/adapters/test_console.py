from __future__ import annotations

import io
import sys

import pytest

from adapters import console
from core import testing
from core.bot import Bot
from core.types import PlaceKind, Reply


def test_a_message_without_channel_is_a_dm() -> None:
    message = console.make_message("hi", user="alice")
    assert message.place.kind is PlaceKind.DM and message.place.channel == "dm:alice"
    assert message.speaker.user_id == "alice" and message.speaker.platform == "console"


def test_a_message_with_channel_is_said_in_the_group() -> None:
    message = console.make_message("hi", user="bob", channel="lounge")
    assert message.place.kind is PlaceKind.GROUP and message.place.channel == "lounge"


async def test_interactive_session(bot: Bot, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "stdin", io.StringIO("hello there\n\n/help\nbye now\n/quit\nlost\n"))
    out = io.StringIO()
    monkeypatch.setattr(sys, "stdout", out)
    await console.interactive(bot, user="alice")
    text = out.getvalue()
    assert "companion> echo: hello there\n" in text
    assert "/reset - start this conversation afresh" in text
    assert "companion> echo: bye now\n" in text
    assert "lost" not in text  # nothing is read after /quit
    assert (bot.settings.data_dir / "console_history").parent.is_dir()


async def test_what_was_left_unanswered_is_answered_first(
    bot: Bot, monkeypatch: pytest.MonkeyPatch
) -> None:
    # the terminal was killed after the line was taken in, before the answer
    await bot.inbox.accept(console.make_message("are you still there?", user="alice"))
    monkeypatch.setattr(sys, "stdin", io.StringIO("/quit\n"))
    out = io.StringIO()
    monkeypatch.setattr(sys, "stdout", out)
    await console.interactive(bot, user="alice")
    assert (
        "(before it stopped, you said: are you still there?)\n"
        "companion> echo: are you still there?\n"
    ) in out.getvalue()


async def test_interactive_session_ends_on_eof(bot: Bot, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "stdin", io.StringIO("one\n"))
    monkeypatch.setattr(sys, "stdout", io.StringIO())
    await console.interactive(bot, user="alice", channel="lounge")
    turns = await testing.history(bot, console.make_message("", user="alice", channel="lounge"))
    assert [t.text for t in turns] == ["one", "echo: alice: one"]


async def test_terminal_shows_an_apology_after_a_partial_reply() -> None:
    out = io.StringIO()
    channel = console.TerminalChannel(out, "sol")
    place = console.make_message("x", user="a").place
    await channel.typing()
    await channel.stream(" Hel")
    await channel.send(Reply("Sorry.", place, failed=True))
    assert out.getvalue() == "sol> Hel\nsol> Sorry.\n"
