"""The Telegram adapter end to end: the real python-telegram-bot client, a fake Bot API
server on 127.0.0.1, and the real core with the fake generator."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from pydantic import SecretStr
from telegram import Message as TgMessage
from telegram import User

from adapters.telegram_adapter import WEBHOOK_SECRET_HEADER, TelegramAdapter, to_message
from core import testing
from core.errors import ConfigError
from core.generation.fake import FakeGenerator, Script
from core.settings import Settings
from core.types import PlaceKind
from tests.adapters.fake_telegram import (
    BOT,
    TOKEN,
    FakeTelegram,
    command,
    group,
    mention,
    person,
)
from tests.adapters.helpers import settled

PAYLOADS = Path(__file__).parent / "payloads"


@dataclass
class Running:
    fake: FakeTelegram
    adapter: TelegramAdapter
    generator: FakeGenerator


def telegram_settings(tmp_path: Path, fake: FakeTelegram, **more: Any) -> Settings:
    return Settings(
        data_dir=tmp_path / "data",
        cache_dir=tmp_path / "cache",
        telegram_bot_token=SecretStr(TOKEN),
        telegram_api_base_url=fake.url,
        _env_file=None,  # type: ignore[call-arg]
        **more,
    )


@pytest.fixture
async def fake() -> AsyncIterator[FakeTelegram]:
    server = FakeTelegram()
    await server.start()
    yield server
    await server.stop()


@pytest.fixture
async def running(
    tmp_path: Path,
    plugins: list[str],
    fake: FakeTelegram,
    script: Script,
    request: pytest.FixtureRequest,
) -> AsyncIterator[Running]:
    extra = getattr(request, "param", {})
    settings = telegram_settings(tmp_path, fake, **extra)
    generator = FakeGenerator(script, delay=0.01)
    async with testing.open_bot(
        settings.data_dir,
        settings=settings,
        generator=generator,
        plugins=plugins,
        plugin_settings={"moderation": {"blocked_words": ["spoiler"]}},
    ) as bot:
        adapter = TelegramAdapter(settings)
        await adapter.login()
        await adapter.start(bot)
        try:
            yield Running(fake, adapter, generator)
        finally:
            await adapter.stop_intake()
    await adapter.close()


async def test_a_direct_message_is_answered_with_typing_first(running: Running) -> None:
    fake = running.fake
    fake.update(fake.message("hello there"))
    await fake.wait_for("sendMessage")
    await settled(running)
    (sent,) = fake.sent()
    assert fake.texts() == ["echo: hello there"] and int(sent["chat_id"]) == person(1)["id"]
    assert "reply_parameters" not in sent  # no quote in a private chat
    assert fake.sent("sendChatAction")[0]["action"] == "typing"
    methods = [c.method for c in fake.calls]
    assert methods.index("sendChatAction") < methods.index("sendMessage")


async def test_in_a_group_only_mentions_replies_and_commands_are_answered(
    running: Running,
) -> None:
    fake, lounge = running.fake, group()
    fake.update(fake.message("just chatting among ourselves", chat=lounge))
    text = "@sol_bot what do you think?"
    asked = fake.message(text, chat=lounge, entities=mention(text, "sol_bot"))
    fake.update(asked)
    await fake.wait_for("sendMessage")
    await settled(running)
    (sent,) = fake.sent()
    assert fake.texts() == ["echo: User1: what do you think?"]
    assert sent["reply_parameters"]["message_id"] == asked["message_id"]  # quoted

    bot_message = {"message_id": 77, "date": 0, "chat": lounge, "from": BOT, "text": "hi"}
    fake.update(fake.message("answering you", chat=lounge, reply_to_message=bot_message))
    fake.update(fake.message("/help@sol_bot", chat=lounge, entities=command("/help@sol_bot")))
    fake.update(fake.message("/help@otherbot", chat=lounge, entities=command("/help@otherbot")))
    await fake.wait_for("sendMessage", 3)
    await settled(running)
    texts = fake.texts()
    assert len(texts) == 3 and texts[1] == "echo: User1: answering you"
    assert texts[2].startswith("I'm companion") and "/privacy" in texts[2]


@pytest.mark.parametrize("running", [{"admins": "telegram:1002"}], indirect=True)
async def test_an_admin_blocks_someone_by_replying_to_their_message(running: Running) -> None:
    fake, lounge = running.fake, group()
    troll = fake.message("something nasty", chat=lounge)
    fake.update(troll)
    block = command("/block@sol_bot")
    fake.update(
        fake.message(
            "/block@sol_bot", user=person(2), chat=lounge, entities=block, reply_to_message=troll
        )
    )
    await fake.wait_for("sendMessage")
    text = "@sol_bot hello?"
    fake.update(fake.message(text, chat=lounge, entities=mention(text, "sol_bot")))
    await settled(running)
    # replying to the bot's own message does not name the bot
    own = fake.message("something the bot said", user=BOT, chat=lounge)
    fake.update(
        fake.message(
            "/block@sol_bot", user=person(2), chat=lounge, entities=block, reply_to_message=own
        )
    )
    await settled(running)
    assert fake.texts()[0] == (
        "Blocked telegram:1001: I won't answer them or keep anything they say. "
        "/unblock telegram:1001 to undo."
    )
    assert len(fake.texts()) == 2 and "Usage: /block WHO" in fake.texts()[1]


async def test_forum_topics_are_threads_and_the_reply_stays_in_the_topic(
    running: Running,
) -> None:
    fake, forum = running.fake, group(-1002, forum=True)
    text = "@sol_bot hello topic"
    fake.update(
        fake.message(
            text,
            chat=forum,
            entities=mention(text, "sol_bot"),
            message_thread_id=42,
            is_topic_message=True,
        )
    )
    await fake.wait_for("sendMessage")
    assert int(fake.sent()[0]["message_thread_id"]) == 42
    assert int(fake.sent("sendChatAction")[0]["message_thread_id"]) == 42


@pytest.mark.parametrize("script", [lambda _: " ".join(["word" * 15] * 90)])
async def test_a_long_reply_is_split_at_telegrams_limit(running: Running) -> None:
    running.fake.update(running.fake.message("tell me everything"))
    await running.fake.wait_for("sendMessage", 2)
    await settled(running)
    parts = running.fake.texts()
    assert all(len(p) <= 4096 for p in parts) and sum(len(p) for p in parts) > 4096
    assert " ".join(parts) == " ".join(["word" * 15] * 90)


async def test_a_429_is_waited_out_and_the_reply_is_not_lost(running: Running) -> None:
    fake = running.fake
    fake.fail_next("sendMessage", 429, parameters={"retry_after": 1})
    fake.update(fake.message("are you there?"))
    await fake.wait_for("sendMessage", 2)
    await settled(running)
    assert fake.texts() == ["echo: are you there?"]  # the first try failed, the retry landed
    assert len(fake.sent()) == 2


async def test_the_bots_own_messages_and_other_bots_are_ignored(running: Running) -> None:
    fake = running.fake
    own = {**BOT}
    fake.update(fake.message("I said this", user=own))
    fake.update(fake.message("beep", user=person(9, is_bot=True)))
    fake.update(fake.message("a person"))
    await fake.wait_for("sendMessage")
    await settled(running)
    assert fake.texts() == ["echo: a person"]


async def test_polling_survives_a_server_error(running: Running) -> None:
    fake = running.fake
    fake.fail_next("getUpdates", 502)
    await asyncio.sleep(0.2)
    fake.update(fake.message("still there?"))
    await fake.wait_for("sendMessage", within=15)
    await settled(running)
    assert fake.texts() == ["echo: still there?"]


@pytest.mark.parametrize("script", [lambda _: "a reply that is streamed word by word " * 4])
async def test_replies_are_streamed_by_editing_the_message(running: Running) -> None:
    running.generator.delay = 0.08
    running.fake.update(running.fake.message("stream please"))
    await running.fake.wait_for("editMessageText", within=15)
    await settled(running)
    edits = running.fake.sent("editMessageText")
    assert edits[-1]["text"] == ("a reply that is streamed word by word " * 4).strip()
    assert len(running.fake.sent()) == 1  # one message, edited


@pytest.mark.parametrize(
    "running",
    [{"telegram_webhook_url": "https://bot.example.org/telegram/hook", "telegram_webhook_port": 0}],
    indirect=True,
)
async def test_webhook_mode_checks_the_secret_and_drops_redelivered_updates(
    running: Running,
) -> None:
    fake, adapter = running.fake, running.adapter
    (hook,) = fake.sent("setWebhook")
    assert hook["url"] == "https://bot.example.org/telegram/hook"
    assert hook["secret_token"] == adapter.webhook_secret
    assert not fake.sent("getUpdates") and not fake.sent("deleteWebhook")
    update = {"update_id": 900, "message": fake.message("via webhook")}
    url = f"http://127.0.0.1:{adapter.webhook_port}/telegram/hook"
    async with aiohttp.ClientSession() as http:
        wrong = await http.post(url, json=update, headers={WEBHOOK_SECRET_HEADER: "guess"})
        assert wrong.status == 403
        good = {WEBHOOK_SECRET_HEADER: adapter.webhook_secret}
        for _ in range(2):  # Telegram redelivers when it did not see our answer in time
            assert (await http.post(url, json=update, headers=good)).status == 200
        bad = await http.post(url, data=b"{not json", headers=good)
        assert bad.status == 400
    await fake.wait_for("sendMessage")
    await settled(running)
    assert fake.texts() == ["echo: via webhook"]


async def test_a_refused_token_fails_at_login_without_showing_it(
    tmp_path: Path, fake: FakeTelegram
) -> None:
    fake.token = "987654321:a-different-token-than-the-one-configured"
    adapter = TelegramAdapter(telegram_settings(tmp_path, fake))
    with pytest.raises(ConfigError, match="TELEGRAM_BOT_TOKEN was refused") as error:
        await adapter.login()
    assert TOKEN not in str(error.value) and TOKEN.split(":")[1] not in str(error.value)


def test_a_malformed_token_is_refused_before_connecting(tmp_path: Path) -> None:
    settings = Settings(
        data_dir=tmp_path,
        telegram_bot_token=SecretStr("not-a-token"),
        _env_file=None,  # type: ignore[call-arg]
    )
    with pytest.raises(ConfigError, match="TELEGRAM_BOT_TOKEN") as error:
        TelegramAdapter(settings)
    assert "not-a-token" not in str(error.value)


# --- conversion of recorded payloads ----------------------------------------------------
ME = User(int(str(BOT["id"])), "Sol", True, username="sol_bot")


def _recorded(name: str) -> TgMessage:
    data = json.loads((PAYLOADS / f"telegram_{name}.json").read_text())
    message = TgMessage.de_json(data["message"], None)
    assert message is not None
    return message


def test_private_message_becomes_a_dm() -> None:
    message = to_message(_recorded("private"), ME)
    assert message is not None and message.place.kind is PlaceKind.DM
    assert message.place.channel == message.speaker.user_id == "111222333"
    assert message.speaker.display_name == "Ada Lovelace" and message.text == "hi there"


def test_group_mention_is_stripped_and_marks_the_message_as_addressed() -> None:
    message = to_message(_recorded("group_mention"), ME)
    assert message is not None and message.place.kind is PlaceKind.GROUP
    assert message.place.channel == "-1001234567890" and message.mentions_bot
    assert message.text == "how are you?"


def test_forum_topic_message_has_the_topic_as_its_thread() -> None:
    message = to_message(_recorded("forum_topic"), ME)
    assert message is not None and message.place.thread == "5"
    assert not message.mentions_bot and message.reply_to == ""  # topic start, not a reply


def test_photo_caption_is_the_text_and_the_photo_an_attachment() -> None:
    message = to_message(_recorded("photo_caption"), ME)
    assert message is not None and message.text == "look at this"
    assert [a.content_type for a in message.attachments] == ["image/jpeg"]


def test_channel_posts_are_not_turns() -> None:
    assert to_message(_recorded("channel_post"), ME) is None


@pytest.mark.parametrize("plugins", [["moderation", "reminders"]])
async def test_private_notices_go_to_the_person_and_reminders_to_the_chat(
    running: Running,
) -> None:
    fake, lounge = running.fake, group()
    text = "@sol_bot big spoiler ahead"
    fake.update(fake.message(text, chat=lounge, entities=mention(text, "sol_bot")))
    await fake.wait_for("sendMessage")
    (notice,) = fake.sent()
    assert int(notice["chat_id"]) == person(1)["id"] and "blocked" in notice["text"]
    text = "@sol_bot remind me in 1 second to stretch"
    fake.update(fake.message(text, chat=lounge, entities=mention(text, "sol_bot")))
    await fake.wait_for("sendMessage", 3, within=10)
    reminder = fake.sent()[-1]
    assert int(reminder["chat_id"]) == lounge["id"]
    assert reminder["text"] == "⏰ Reminder for User1: stretch"
