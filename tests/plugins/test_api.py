"""The plugin API, through the shipped test kit and the sample plugin in this folder."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from core import testing
from core.bot import Bot
from core.emotion.policy import OPENINGS
from core.errors import ConfigError
from core.generation.fake import FakeGenerator
from core.plugins import Plugin, Rest
from core.settings import Settings
from tests.plugins import sample

SAMPLE = "tests.plugins.sample"


def quick_settings(tmp_path: Path, **more: object) -> Settings:
    return testing.settings_for(tmp_path / "data", plugin_timeout_s=0.5, **more)


@pytest.fixture
async def bot(tmp_path: Path) -> AsyncIterator[Bot]:
    async with testing.open_bot(
        tmp_path,
        settings=quick_settings(tmp_path),
        plugins=["help", SAMPLE],
        plugin_settings={SAMPLE: {"greeting": "Hi"}},
        admins=["root"],
    ) as running:
        yield running


@pytest.fixture
def chat(bot: Bot) -> testing.FakeAdapter:
    return testing.FakeAdapter(bot)


async def test_arguments_are_parsed_from_the_annotations(chat: testing.FakeAdapter) -> None:
    assert await chat.say("/greet Ada") == "Hi, Ada!"
    assert await chat.say("/greet Ada 2 fancy") == "✨ Hi, Ada! Hi, Ada! ✨"
    assert await chat.say('/greet "Ada Lovelace"') == "Hi, Ada Lovelace!"
    assert await chat.say("/echo keep   all of  this") == "keep   all of  this"
    assert await chat.say("/weigh 2.5") == "about 2 kg"
    assert await chat.say("/weigh 2.5 yes") == "2.500 kg"


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("/greet", "name is missing"),
        ("/greet Ada two", "times must be a whole number"),
        ("/greet Ada 1 shiny", "style must be one of plain, fancy"),
        ("/greet Ada 1 plain extra", "too many arguments"),
        ("/echo", "text is missing"),
    ],
)
async def test_a_wrong_argument_gets_the_usage_line(
    chat: testing.FakeAdapter, text: str, problem: str
) -> None:
    answer = await chat.say(text)
    assert answer.startswith(problem)
    assert answer.endswith("Usage: /greet <name> [times] [plain|fancy]") or "/echo <text...>" in (
        answer
    )


async def test_help_is_generated_from_the_declarations(chat: testing.FakeAdapter) -> None:
    listing = await chat.say("/help")
    assert "/greet <name> [times] [plain|fancy] - greet someone a few times" in listing
    assert "/forget [confirm]" in listing  # the privacy plugin always runs
    assert "/secret" not in listing  # admin-only, and alice is not an admin
    assert "/secret" in await chat.say("/help", user="root")
    assert await chat.say("/help weigh") == "/weigh <kilos> [exact]\nweigh a number"


async def test_hooks_answer_stop_or_let_the_turn_go_on(chat: testing.FakeAdapter, bot: Bot) -> None:
    generator = bot.generator
    assert isinstance(generator, FakeGenerator)
    assert await chat.say("ping") == "pong"  # answered by the hook, not the model
    assert await chat.say("ping", channel="lounge") == "echo: Alice: ping"  # dm_only
    assert await chat.say("shh, quiet") == ""  # stopped: no answer at all
    asked = len(generator.prompts)
    answer = await chat.say("I feel sad today")
    assert answer.startswith(OPENINGS["sadness"])  # the emotion policy's opening
    assert len(generator.prompts) == asked + 1  # the hook let it go on to the model
    assert "The person is sad: be gentle." in generator.prompts[-1][0].content
    assert chat.last.reactions == ["🫂"]


async def test_a_raising_plugin_gets_an_apology_and_the_turn_goes_on(
    chat: testing.FakeAdapter, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.ERROR):
        answer = await chat.say("/broken")
    assert answer.startswith("Sorry, /broken ran into a problem")
    assert "this plugin is broken" in caplog.text  # the traceback is in the log
    # A failing hook is skipped: the model still answers.
    assert await chat.say("explode now") == "echo: explode now"


async def test_a_hanging_plugin_is_cut_off_and_other_users_are_not_held_up(
    tmp_path: Path,
) -> None:
    settings = quick_settings(tmp_path).model_copy(update={"plugin_timeout_s": 2.0})
    async with testing.open_bot(tmp_path, settings=settings, plugins=[SAMPLE]) as bot:
        chat = testing.FakeAdapter(bot)
        started = asyncio.get_running_loop().time()
        hanging = asyncio.create_task(chat.say("/hang", user="alice"))
        stalled = asyncio.create_task(chat.say("stall please", user="carol"))
        others = await asyncio.gather(*(chat.say(f"hi {n}", user=f"user{n}") for n in range(5)))
        quick = asyncio.get_running_loop().time() - started
        # Everyone else is answered long before the 2 s limit cuts the plugin off.
        assert others == [f"echo: hi {n}" for n in range(5)] and quick < 1.0
        assert (await hanging).startswith("Sorry, /hang ran into a problem")
        assert await stalled == "echo: stall please"  # the hook was cut off, the model answered


async def test_admin_commands_need_an_admin(chat: testing.FakeAdapter) -> None:
    assert await chat.say("/secret") == "Only an admin of this bot can use /secret."
    assert await chat.say("/secret", user="root") == "the secret"
    assert "Only an admin" in await chat.say("/plugin disable sample")


async def test_rate_limits_per_command_and_per_person(chat: testing.FakeAdapter) -> None:
    assert await chat.say("/weigh 1") == "about 1 kg"
    assert await chat.say("/weigh 2") == "about 2 kg"
    assert (await chat.say("/weigh 3")).startswith("Slow down a little: you can use /weigh")
    assert await chat.say("/weigh 3", user="bob") == "about 3 kg"  # per person


async def test_person_rate_limit_covers_all_commands(tmp_path: Path) -> None:
    settings = quick_settings(tmp_path, command_rate="3/minute")
    async with testing.open_bot(tmp_path, settings=settings, plugins=[SAMPLE]) as bot:
        chat = testing.FakeAdapter(bot)
        answers = [await chat.say(f"/echo {n}") for n in range(4)]
    assert answers[:3] == ["0", "1", "2"] and answers[3].startswith("Slow down")


async def test_plugin_storage_is_scoped_and_covered_by_export_and_forget(
    chat: testing.FakeAdapter,
) -> None:
    assert await chat.say("/count") == "1 so far"
    assert await chat.say("/count") == "2 so far"
    assert await chat.say("/count", user="bob") == "1 so far"  # bob's own
    assert await chat.say("/count", channel="lounge") == "1 so far"  # not the DM's entry
    # In her DM, alice sees her entries from everywhere: the latest is the lounge's.
    assert await chat.say("/count") == "2 so far"
    exported = await chat.say("/export")
    assert exported.count('"plugin": "sample"') == 2  # the DM's entry and the lounge's
    await chat.say("/forget confirm")
    assert await chat.say("/count") == "1 so far"


async def test_setup_jobs_and_teardown_run(tmp_path: Path) -> None:
    sample.events.clear()
    async with testing.open_bot(tmp_path, plugins=[SAMPLE]) as bot:
        state = bot.plugin_host.loaded["sample"].state
        await testing.until(lambda: state.get("ticks", 0) >= 3)  # a job every 0.05 s
    assert sample.events == ["setup", "teardown"]


async def test_admins_disable_enable_and_reload_without_a_restart(
    tmp_path: Path, chat: testing.FakeAdapter, bot: Bot
) -> None:
    listing = await chat.say("/plugins", user="root")
    assert "+ sample: Exercises the plugin API." in listing and "- reminders" in listing
    assert await chat.say(f"/plugin disable {SAMPLE}", user="root") == f"Disabled {SAMPLE}."
    assert await chat.say("/greet Ada") == "I don't know /greet. Try /help."
    assert "always on" in await chat.say("/plugin disable privacy", user="root")
    assert await chat.say(f"/plugin enable {SAMPLE}", user="root") == f"Enabled {SAMPLE}."
    assert await chat.say("/greet Ada") == "Hi, Ada!"
    sample.events.clear()
    assert await chat.say(f"/plugin reload {SAMPLE}", user="root") == f"Reloaded {SAMPLE}."
    assert sample.events == ["setup"]  # the old code tore down, the new one set up
    missing = await chat.say("/plugin enable nosuchplugin", user="root")
    assert missing.startswith("plugin 'nosuchplugin' not found")


async def test_an_admins_choice_is_kept_across_restarts(tmp_path: Path) -> None:
    settings = quick_settings(tmp_path)
    async with testing.open_bot(
        tmp_path, settings=settings, plugins=[SAMPLE], admins=["root"]
    ) as bot:
        chat = testing.FakeAdapter(bot)
        await chat.say("/plugin disable sample", user="root")
        await chat.say("/plugin enable reminders", user="root")
    async with testing.open_bot(tmp_path, settings=settings, plugins=[SAMPLE]) as bot:
        assert "sample" not in bot.plugin_host.loaded and "reminders" in bot.plugin_host.loaded


async def test_plugin_settings_come_from_the_profile_and_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SOCIALBOT_PLUGIN_SAMPLE_LOUD", "true")
    async with testing.open_bot(
        tmp_path, plugins=[SAMPLE], plugin_settings={SAMPLE: {"greeting": "Hey"}}
    ) as bot:
        assert await testing.FakeAdapter(bot).say("/greet Ada") == "HEY, ADA!"


async def test_bad_plugin_settings_or_a_missing_plugin_stop_the_start(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"\[plugin.sample\] loud: Input should be a valid"):
        async with testing.open_bot(
            tmp_path, plugins=[SAMPLE], plugin_settings={SAMPLE: {"loud": "very"}}
        ):
            pass
    with pytest.raises(ConfigError, match="plugin 'nope' not found"):
        async with testing.open_bot(tmp_path, plugins=["nope"]):
            pass


async def test_a_command_someone_else_answers_is_reported_at_start(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    plugins = ["help", "tests.plugins.clashing"]
    async with testing.open_bot(tmp_path, plugins=plugins, admins=["root"]) as bot:
        chat = testing.FakeAdapter(bot)
        assert (await chat.say("/status", user="root")).startswith("Profile companion")
        assert (await chat.say("/help")).startswith("I'm companion")
        # once the help plugin is off, the name is free: the other plugin's /help answers
        assert await chat.say("/plugin disable help", user="root") == "Disabled help."
        assert await chat.say("/help") == "the plugin's help"
        assert (await chat.say("/status", user="root")).startswith("Profile companion")
    assert "plugin clashing: /status is the core's own command" in caplog.text
    assert "plugin clashing: /help is also plugin help's, which answers it" in caplog.text


def test_declarations_are_checked_when_written() -> None:
    plugin = Plugin("checks")
    with pytest.raises(TypeError, match="only the last argument can be Rest"):

        @plugin.command()
        async def bad(ctx: object, first: Rest, second: str) -> str:
            return ""

    with pytest.raises(TypeError, match="has type"):

        @plugin.command()
        async def worse(ctx: object, when: list[str]) -> str:
            return ""

    with pytest.raises(ValueError, match="plugin name"):
        Plugin("Not A Name")
