"""/status: what an admin sees of the running bot."""

from __future__ import annotations

from pathlib import Path

from core import testing


async def test_status_tallies_how_turns_ended_and_what_the_bot_holds(tmp_path: Path) -> None:
    settings = testing.settings_for(tmp_path, max_message_chars=50)
    async with testing.open_bot(tmp_path, settings=settings, admins=["root"]) as bot:
        chat = testing.FakeAdapter(bot)
        await chat.say("hello")
        await chat.say("how are you?")
        await chat.say("/help")
        await chat.say("x" * 51)  # too long
        await chat.say("not for the bot", channel="lounge", mentions_bot=False)
        assert (await chat.say("/status")).startswith("Only an admin")
        status = await chat.say("/status", user="root")
    lines = status.splitlines()
    assert lines[0].startswith("Profile companion, up ")
    assert lines[1] == "Model: embedded on fake; emotion reading on; long-term memory on."
    assert lines[2] == "Platforms: test."
    assert lines.pop(3) == (
        "In groups: answers when mentioned, replied to or given a command; "
        "one conversation per channel or thread."
    )
    assert lines[3] == (
        "Since start: 2 replies from the model; 2 answered by commands and plugins; "
        "1 refused with a reason (too long, not allowed); 1 not answered (not meant for "
        "me, empty, blocked, stopped by a plugin)."
    )
    assert lines[4] == "Now: 1 conversation in progress, this one included."
    assert lines[5].startswith("Memory: ") and " MiB; database " in lines[5]
    assert lines[6] == "Plugins running: help, privacy."
