"""The Telegram adapter end to end: the real python-telegram-bot client, a fake Bot API
server on 127.0.0.1, and the real core with the fake generator."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, TypeAlias

import aiohttp
import pytest
from pydantic import SecretStr
from telegram import Message as TgMessage
from telegram import User

from adapters.telegram_adapter import PLATFORM, WEBHOOK_SECRET_HEADER, TelegramAdapter, to_message
from core import testing
from core.errors import ConfigError
from core.settings import Settings
from core.types import Message, Place, PlaceKind, Speaker
from tests.adapters.conftest import Platform, Running, platform_harness
from tests.adapters.fake_telegram import (
    BOT,
    TOKEN,
    FakeTelegram,
    command,
    group,
    mention,
    person,
)

PAYLOADS = Path(__file__).parent / "payloads"

Telegram: TypeAlias = Running[TelegramAdapter, FakeTelegram]


def telegram_settings(
    tmp_path: Path, server: FakeTelegram, more: dict[str, Any] | None = None
) -> Settings:
    return testing.settings_for(
        tmp_path / "data",
        telegram_bot_token=SecretStr(TOKEN),
        telegram_api_base_url=server.url,
        **(more or {}),
    )


@pytest.fixture
def platform() -> Platform[TelegramAdapter, FakeTelegram]:
    return Platform(FakeTelegram, telegram_settings, TelegramAdapter)


async def test_a_direct_message_is_answered_with_typing_first(running: Telegram) -> None:
    server = running.server
    server.update(server.message("hello there"))
    await running.settle(pushed=1)
    (sent,) = server.sent()
    assert server.texts() == ["echo: hello there"] and int(sent["chat_id"]) == person(1)["id"]
    assert "reply_parameters" not in sent  # no quote in a private chat
    assert server.sent("sendChatAction")[0]["action"] == "typing"
    methods = [c.method for c in server.calls]
    assert methods.index("sendChatAction") < methods.index("sendMessage")


async def test_in_a_group_only_mentions_replies_and_commands_are_answered(
    running: Telegram,
) -> None:
    server, lounge = running.server, group()
    server.update(server.message("just chatting among ourselves", chat=lounge))
    text = "@sol_bot what do you think?"
    asked = server.message(text, chat=lounge, entities=mention(text, "sol_bot"))
    server.update(asked)
    await running.settle(pushed=2)
    (sent,) = server.sent()  # the chat among members is not answered
    assert server.texts() == ["echo: User1: what do you think?"]
    assert sent["reply_parameters"]["message_id"] == asked["message_id"]  # quoted

    bot_message = {"message_id": 77, "date": 0, "chat": lounge, "from": BOT, "text": "hi"}
    server.update(server.message("answering you", chat=lounge, reply_to_message=bot_message))
    server.update(server.message("/help@sol_bot", chat=lounge, entities=command("/help@sol_bot")))
    server.update(server.message("/help@otherbot", chat=lounge, entities=command("/help@otherbot")))
    await running.settle(pushed=3)
    texts = server.texts()  # not the command meant for another bot
    assert len(texts) == 3 and texts[1] == "echo: User1: answering you"
    assert texts[2].startswith("I'm companion") and "/privacy" in texts[2]


@pytest.mark.parametrize("running", [{"admins": "telegram:1002"}], indirect=True)
async def test_the_command_menu_follows_the_command_table(running: Telegram) -> None:
    server = running.server
    await server.wait_for("setMyCommands")

    def menu() -> set[str]:
        return {c["command"] for c in server.sent("setMyCommands")[-1]["commands"]}

    first = menu()
    assert {"help", "privacy", "forget"} <= first and not first & {"status", "block"}  # admin
    assert "remind" not in first  # the control: reminders is off
    server.update(server.message("/plugin enable reminders", user=person(2)))
    await server.wait_for("setMyCommands", 2)
    assert menu() == first | {"remind", "reminders"}
    await running.settle(pushed=1)
    assert server.texts() == ["Enabled reminders."]


@pytest.mark.parametrize("running", [{"admins": "telegram:1002"}], indirect=True)
async def test_an_admin_blocks_someone_by_replying_to_their_message(running: Telegram) -> None:
    server, lounge = running.server, group()
    troll = server.message("something nasty", chat=lounge)
    server.update(troll)
    block = command("/block@sol_bot")
    server.update(
        server.message(
            "/block@sol_bot", user=person(2), chat=lounge, entities=block, reply_to_message=troll
        )
    )
    await server.wait_for("sendMessage")
    text = "@sol_bot hello?"
    server.update(server.message(text, chat=lounge, entities=mention(text, "sol_bot")))
    await running.settle(pushed=3)
    assert len(server.texts()) == 1  # the blocked person's mention is not answered
    # replying to the bot's own message does not name the bot
    own = server.message("something the bot said", user=BOT, chat=lounge)
    server.update(
        server.message(
            "/block@sol_bot", user=person(2), chat=lounge, entities=block, reply_to_message=own
        )
    )
    await running.settle(pushed=1)
    assert server.texts()[0] == (
        "Blocked telegram:1001: I won't answer them or keep anything they say. "
        "/unblock telegram:1001 to undo."
    )
    assert len(server.texts()) == 2 and "Usage: /block WHO" in server.texts()[1]


async def test_forum_topics_are_threads_and_the_reply_stays_in_the_topic(
    running: Telegram,
) -> None:
    server, forum = running.server, group(-1002, forum=True)
    text = "@sol_bot hello topic"
    server.update(
        server.message(
            text,
            chat=forum,
            entities=mention(text, "sol_bot"),
            message_thread_id=42,
            is_topic_message=True,
        )
    )
    await server.wait_for("sendMessage")
    assert int(server.sent()[0]["message_thread_id"]) == 42
    assert int(server.sent("sendChatAction")[0]["message_thread_id"]) == 42


@pytest.mark.parametrize("script", [lambda _: " ".join(["word" * 15] * 90)])
async def test_a_long_reply_is_split_at_telegrams_limit(running: Telegram) -> None:
    running.server.update(running.server.message("tell me everything"))
    await running.settle(pushed=1)
    parts = running.server.texts()
    assert all(len(p) <= 4096 for p in parts) and sum(len(p) for p in parts) > 4096
    assert " ".join(parts) == " ".join(["word" * 15] * 90)


async def test_a_429_is_waited_out_and_the_reply_is_not_lost(running: Telegram) -> None:
    server = running.server
    server.fail_next("sendMessage", 429, parameters={"retry_after": 1})
    server.update(server.message("are you there?"))
    await running.settle(pushed=1)
    assert server.texts() == ["echo: are you there?"]  # the first try failed, the retry landed
    assert len(server.sent()) == 2


async def test_the_bots_own_messages_and_other_bots_are_ignored(running: Telegram) -> None:
    server = running.server
    own = {**BOT}
    server.update(server.message("I said this", user=own))
    server.update(server.message("beep", user=person(9, is_bot=True)))
    server.update(server.message("a person"))
    await running.settle(pushed=3)
    assert server.texts() == ["echo: a person"]


async def test_polling_survives_a_server_error(running: Telegram) -> None:
    server = running.server
    server.fail_next("getUpdates", 502)
    await server.wait(lambda: server.failed == [("getUpdates", 502)])  # the poller got it
    server.update(server.message("still there?"))
    await server.wait_for("sendMessage", within=15)
    await running.settle(pushed=1)
    assert server.texts() == ["echo: still there?"]


@pytest.mark.parametrize("script", [lambda _: "a reply that is streamed word by word " * 4])
async def test_replies_are_streamed_by_editing_the_message(running: Telegram) -> None:
    running.generator.delay = 0.08
    running.server.update(running.server.message("stream please"))
    await running.settle(pushed=1)
    edits = running.server.sent("editMessageText")
    assert edits[-1]["text"] == ("a reply that is streamed word by word " * 4).strip()
    assert len(running.server.sent()) == 1  # one message, edited


@pytest.mark.parametrize(
    "running",
    [{"telegram_webhook_url": "https://bot.example.org/telegram/hook", "telegram_webhook_port": 0}],
    indirect=True,
)
async def test_webhook_mode_checks_the_secret_and_drops_redelivered_updates(
    running: Telegram,
) -> None:
    server, adapter = running.server, running.adapter
    (hook,) = server.sent("setWebhook")
    assert hook["url"] == "https://bot.example.org/telegram/hook"
    assert hook["secret_token"] == adapter.webhook_secret
    assert not server.sent("getUpdates") and not server.sent("deleteWebhook")
    update = {"update_id": 900, "message": server.message("via webhook")}
    url = f"http://127.0.0.1:{adapter.webhook_port}/telegram/hook"
    async with aiohttp.ClientSession() as http:
        wrong = await http.post(url, json=update, headers={WEBHOOK_SECRET_HEADER: "guess"})
        assert wrong.status == 403
        good = {WEBHOOK_SECRET_HEADER: adapter.webhook_secret}
        for _ in range(2):  # Telegram redelivers when it did not see our answer in time
            assert (await http.post(url, json=update, headers=good)).status == 200
        bad = await http.post(url, data=b"{not json", headers=good)
        assert bad.status == 400
    # Each 200 came once the bot had the update (in its inbox): the update, its
    # redelivery (received, then dropped) and the bad body (received and skipped).
    await running.settle(pushed=3)
    assert server.texts() == ["echo: via webhook"] and adapter.malformed == 1


async def test_a_refused_token_fails_at_login_without_showing_it(
    tmp_path: Path, server: FakeTelegram
) -> None:
    server.token = "987654321:a-different-token-than-the-one-configured"
    adapter = TelegramAdapter(telegram_settings(tmp_path, server))
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
    running: Telegram,
) -> None:
    server, lounge = running.server, group()
    text = "@sol_bot big spoiler ahead"
    server.update(server.message(text, chat=lounge, entities=mention(text, "sol_bot")))
    await running.settle(pushed=1)
    (notice,) = server.sent()  # the notice only: nothing is said in the group
    assert int(notice["chat_id"]) == person(1)["id"] and "blocked" in notice["text"]
    text = "@sol_bot remind me in 1 second to stretch"
    server.update(server.message(text, chat=lounge, entities=mention(text, "sol_bot")))
    await server.wait_for("sendMessage", 3, within=10)
    await running.settle(pushed=1)
    reminder = server.sent()[-1]
    assert int(reminder["chat_id"]) == lounge["id"]
    assert reminder["text"] == "⏰ Reminder for User1: stretch"


async def test_after_a_kill_a_half_shown_reply_is_finished_in_its_message(
    tmp_path: Path, server: FakeTelegram, platform: Platform[TelegramAdapter, FakeTelegram]
) -> None:
    settings = telegram_settings(tmp_path, server)
    native = server.message("are you there?")
    asked = Message(
        Speaker(PLATFORM, str(native["from"]["id"]), "User1"),
        Place(PLATFORM, str(native["chat"]["id"]), PlaceKind.DM),
        "are you there?",
        id=str(native["message_id"]),
    )
    # what a kill leaves: the message accepted (confirmed to Telegram), its reply's first
    # part on screen in message 555
    async with testing.open_bot(settings.data_dir, settings=settings) as bot:
        entry = await bot.inbox.accept(asked)
        assert entry is not None
        await bot.inbox.shown(entry, "555", "echo: are")
    async with platform_harness(platform, server, settings) as running:
        await server.wait(lambda: "echo: are you there?" in [e["text"] for e in edits(server)])
        await running.bot.settle()
    assert [e["message_id"] for e in edits(server)] == [555]  # the same message, finished
    assert not server.sent()  # nothing posted anew
    # and Telegram delivering the update again (it was confirmed; say it was not) is
    # answered once: the inbox knows it
    server.update(native)
    async with platform_harness(platform, server, settings) as running:
        await running.settle(pushed=1)
    assert not server.sent() and len(edits(server)) == 1


def edits(server: FakeTelegram) -> list[dict[str, Any]]:
    return [{**e, "message_id": int(e["message_id"])} for e in server.sent("editMessageText")]
