"""Telegram updates that cannot be read: through long polling (the real python-telegram-bot
poller against the fake Bot API) and through the webhook. None may wedge the poller, make
the webhook answer 5xx, hold up the good messages around it or put a traceback, a message's
text or a token in the log; each is logged once and counted."""

from __future__ import annotations

import itertools
import json
import logging
import time
from collections.abc import Callable
from typing import Any, TypeAlias

import aiohttp
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from adapters.telegram_adapter import WEBHOOK_SECRET_HEADER, TelegramAdapter
from tests.adapters.conftest import Platform, Running
from tests.adapters.fake_telegram import TOKEN, FakeTelegram, person
from tests.adapters.helpers import FUZZ, json_values
from tests.adapters.test_telegram import telegram_settings

Telegram: TypeAlias = Running[TelegramAdapter, FakeTelegram]

SECRET = "SECRET-TEXT"
"""In every bad update that has a text: it must never reach the log."""
_MESSAGE_IDS = itertools.count(50_000)


@pytest.fixture
def platform() -> Platform[TelegramAdapter, FakeTelegram]:
    return Platform(FakeTelegram, telegram_settings, TelegramAdapter)


def _message(**changes: Any) -> dict[str, Any]:
    """A good private message from person 1, with fields changed (``...`` removes one)."""
    user = person(1)
    message: dict[str, Any] = {
        "message_id": next(_MESSAGE_IDS),
        "date": int(time.time()),
        "chat": {"id": user["id"], "type": "private", "first_name": user["first_name"]},
        "from": user,
        "text": f"{SECRET} hello",
    }
    for key, value in changes.items():
        if value is ...:
            message.pop(key)
        else:
            message[key] = value
    return message


def _nested(depth: int) -> dict[str, Any]:
    message = _message()
    for _ in range(depth):
        message = _message(reply_to_message=message)
    return message


BAD: dict[str, Callable[[], dict[str, Any]]] = {
    # the four kinds of the issue
    "a chat without type": lambda: {"message": _message(chat={"id": 1001, "first_name": "U"})},
    "entities: [null]": lambda: {"message": _message(entities=[None])},
    "a date that is a string": lambda: {"message": _message(date="yesterday")},
    "a garbage callback_query": lambda: {"callback_query": {"id": 5, "data": SECRET}},
    # missing fields
    "no chat": lambda: {"message": _message(chat=...)},
    "no date": lambda: {"message": _message(date=...)},
    "no message_id": lambda: {"message": _message(message_id=...)},
    "a sender without id": lambda: {"message": _message(**{"from": {"first_name": "U"}})},
    "an entity without length": lambda: {
        "message": _message(entities=[{"type": "mention", "offset": 0}])
    },
    "a document without file_id": lambda: {"message": _message(document={"file_name": "x"})},
    "an edited message without date": lambda: {"edited_message": {"chat": 5, "text": SECRET}},
    # wrong types
    "a message that is a list": lambda: {"message": [1, SECRET]},
    "a message that is a string": lambda: {"message": SECRET},
    "a message that is true": lambda: {"message": True},
    "a sender that is a string": lambda: {"message": _message(**{"from": SECRET})},
    "a chat that is a list": lambda: {"message": _message(chat=[1001])},
    "a chat id that is a string": lambda: {
        "message": _message(chat={"id": SECRET, "type": "private"})
    },
    "a message_id that is a string": lambda: {"message": _message(message_id="5")},
    "a text that is a number": lambda: {"message": _message(text=12345)},
    "a text that is a list": lambda: {"message": _message(text=[SECRET])},
    "a first name that is a number": lambda: {
        "message": _message(**{"from": {"id": 1001, "is_bot": False, "first_name": 7}})
    },
    "entities that are an object": lambda: {"message": _message(entities={"type": "mention"})},
    "an entity offset that is a string": lambda: {
        "message": _message(entities=[{"type": "mention", "offset": "x", "length": 3}])
    },
    "a photo that is a string": lambda: {"message": _message(photo=SECRET)},
    "photo: [null]": lambda: {"message": _message(photo=[None])},
    "a reply that is a string": lambda: {"message": _message(reply_to_message=SECRET)},
    "a topic id that is a string": lambda: {
        "message": _message(message_thread_id="x", is_topic_message=True)
    },
    "a callback_query that is a string": lambda: {"callback_query": SECRET},
    # out of range
    "a date past the year 9999": lambda: {"message": _message(date=10**20)},
    "a date before year 1": lambda: {"message": _message(date=-(10**15))},
    "replies nested 800 deep": lambda: {"message": _nested(800)},
}
"""Updates that python-telegram-bot cannot parse, or that lack what a turn needs."""

ODD: dict[str, Callable[[], dict[str, Any]]] = {
    "an unknown kind of update": lambda: {"brand_new_kind": {"x": [1, {"y": None}]}},
    "message: null": lambda: {"message": None},
    "nothing but the id": lambda: {},
}
"""Updates that parse and are not messages: passed over quietly."""

FINE: dict[str, Callable[[int], dict[str, Any]]] = {
    "huge ids": lambda n: {
        "message": _message(message_id=2**62 + n, text=f"odd {n}"),
    },
    "a lone surrogate": lambda n: {"message": _message(text=f"odd {n} \ud800")},
    "a NUL character": lambda n: {"message": _message(text=f"odd {n} a\u0000b")},
    "an entity past the end": lambda n: {
        "message": _message(
            text=f"odd {n}", entities=[{"type": "bold", "offset": 10**9, "length": 3}]
        )
    },
    "extra fields of every type": lambda n: {
        "message": _message(text=f"odd {n}", extra=[None, 1.5, {"x": True}], **{"": 0})
    },
}
"""Odd but readable messages: answered normally."""


def _check_log(caplog: pytest.LogCaptureFixture, bad_ids: list[int]) -> None:
    """Each bad update logged exactly once, nothing worse than a warning, no traceback,
    no message text and no token."""
    records = [r for r in caplog.records if not r.name.startswith(("httpx", "httpcore"))]
    for update_id in bad_ids:
        said = [r for r in records if f"skipped update {update_id} " in r.getMessage()]
        assert len(said) == 1, (update_id, [r.getMessage() for r in said])
    assert not [r for r in records if r.exc_info or r.levelno >= logging.ERROR]
    text = "\n".join(r.getMessage() for r in records)
    assert "Traceback" not in text and SECRET not in text
    assert TOKEN not in text and TOKEN.split(":")[1] not in text


async def test_bad_updates_are_skipped_confirmed_and_logged_once(
    running: Telegram, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    server, adapter = running.server, running.adapter
    bad_ids: list[int] = []
    good: list[str] = []

    def good_one() -> None:
        good.append(f"good {len(good)}")
        server.update(server.message(good[-1]))

    # All at once: one answer to getUpdates holds every kind, between good messages.
    for content in BAD.values():
        good_one()
        bad_ids.append(server.push(content())["update_id"])
    for content in ODD.values():
        server.push(content())
    good_one()
    await running.settle(pushed=len(BAD) + len(ODD) + len(good))
    # One at a time: each bad update is the last of its answer; the poller moves past it.
    for content in BAD.values():
        bad_ids.append(server.push(content())["update_id"])
        await server.wait(lambda: server.offset > bad_ids[-1])
    good_one()
    for n, make in enumerate(FINE.values()):
        server.push(make(n))
    await running.settle(pushed=len(BAD) + 1 + len(FINE))

    last = max(u for u in bad_ids)
    await server.wait(lambda: server.offset > last + 1 + len(FINE))
    assert server.updates == []  # every update was confirmed
    offsets = [offset for _, offset in server.polls]
    assert offsets == sorted(offsets)  # never back
    assert adapter.malformed == len(bad_ids) == 2 * len(BAD)
    texts = server.texts()  # every good and odd message answered once, normally
    assert len(texts) == len(good) + len(FINE) and all(t.startswith("echo: ") for t in texts)
    assert sorted(t for t in texts if t.startswith("echo: good")) == sorted(
        f"echo: {g}" for g in good
    )
    for n in range(len(FINE)):
        assert len([t for t in texts if t.startswith(f"echo: odd {n}")]) == 1
    _check_log(caplog, bad_ids)


async def test_answers_that_are_not_updates_make_the_poller_pause(
    running: Telegram, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    server, adapter = running.server, running.adapter
    unusable = [{"no": "id"}, 5, None, {"update_id": "7"}, {"update_id": True}, {"update_id": -3}]
    unusable.append({"update_id": 2**70, "message": _message()})
    server.answer_next("getUpdates", b"<html>" + SECRET.encode() + b"</html>")
    server.answer_next("getUpdates", json.dumps({"ok": True, "result": unusable}).encode())
    await server.wait(lambda: not server.raw["getUpdates"])
    start = len(server.polls) - 2  # the two answered with garbage, and what followed
    await server.wait(lambda: len(server.polls) >= start + 3)
    times = [at for at, _ in server.polls[start : start + 3]]
    # PTB's own pause after an error: 1 s, then 1.5 s (never at once)
    assert times[1] - times[0] >= 0.9 and times[2] - times[1] >= 1.3
    server.update(server.message("after the garbage"))
    await running.settle(pushed=1 + len(unusable))  # each unusable one counted once
    assert server.texts() == ["echo: after the garbage"]
    assert adapter.malformed == len(unusable)
    said = [r.getMessage() for r in caplog.records if "skipped an update" in r.getMessage()]
    assert len(said) == len(unusable)
    _check_log(caplog, [])


WEBHOOK = {"telegram_webhook_url": "https://bot.example.org/hook", "telegram_webhook_port": 0}

RAW_BODIES: dict[str, bytes] = {
    "not JSON": f"{{{SECRET}".encode(),
    "not UTF-8": b'{"update_id": 1, "message": "\xff\xfe"}',
    "a JSON list": b"[1, 2, 3]",
    "a JSON string": json.dumps(SECRET).encode(),
    "JSON null": b"null",
    "empty": b"",
    "nested 100 000 deep": b"[" * 100_000 + b"]" * 100_000,
    "an object without update_id": json.dumps({"message": _message()}).encode(),
    "an update_id that is a string": json.dumps({"update_id": "12"}).encode(),
    "a negative update_id": json.dumps({"update_id": -5}).encode(),
}


@pytest.mark.parametrize("running", [WEBHOOK], indirect=True)
async def test_the_webhook_answers_bad_bodies_with_400_and_good_ones_normally(
    running: Telegram, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    server, adapter = running.server, running.adapter
    url = f"http://127.0.0.1:{adapter.webhook_port}/hook"
    headers = {WEBHOOK_SECRET_HEADER: adapter.webhook_secret}
    ids = iter(range(5000, 6000))
    statuses: dict[str, int] = {}
    good: list[str] = []
    bad_ids: list[int] = []
    async with aiohttp.ClientSession() as http:

        async def post(name: str, body: bytes) -> None:
            async with http.post(url, data=body, headers=headers) as response:
                statuses[name] = response.status

        for name, content in BAD.items():
            good.append(f"good {len(good)}")
            message = server.message(good[-1])
            await post(good[-1], json.dumps({"update_id": next(ids), "message": message}).encode())
            bad_ids.append(next(ids))
            await post(name, json.dumps({"update_id": bad_ids[-1], **content()}).encode())
        for name, body in RAW_BODIES.items():
            await post(name, body)
        for name, content in ODD.items():
            await post(name, json.dumps({"update_id": next(ids), **content()}).encode())
        # Telegram delivers a refused update again: refused again, not logged again
        await post("again", json.dumps({"update_id": bad_ids[0], **BAD["no chat"]()}).encode())
        for _ in range(3):
            async with http.post(url, data=b"x", headers={WEBHOOK_SECRET_HEADER: "no"}) as r:
                assert r.status == 403
    assert {statuses[name] for name in BAD} == {400} and statuses["again"] == 400
    assert {statuses[name] for name in RAW_BODIES} == {400}
    assert {statuses[name] for name in ODD} == {200}
    assert {statuses[g] for g in good} == {200}
    # every body counted once: the good ones, the odd ones, the refused ones
    await running.settle(pushed=len(good) + len(BAD) + len(RAW_BODIES) + len(ODD))
    assert sorted(server.texts()) == sorted(f"echo: {g}" for g in good)
    assert adapter.malformed == len(BAD) + len(RAW_BODIES)
    _check_log(caplog, bad_ids)
    wrong = [r for r in caplog.records if "wrong secret" in r.getMessage()]
    assert len(wrong) == 1  # knocking is logged at most once a minute


# --- random JSON as updates ---------------------------------------------------------------
_FIELDS = ["message", "callback_query", "edited_message", "chat", "from", "date", "text"]
_FIELDS += ["entities", "message_id", "id", "type", "photo", "reply_to_message", "first_name"]
_leaves = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=12)
)
_keys = st.sampled_from(_FIELDS) | st.text(max_size=6)
_json = json_values(_leaves, _keys, list_size=4, object_size=5, max_leaves=24)
_updates = st.dictionaries(st.sampled_from(_FIELDS[:3]) | st.text(max_size=6), _json, max_size=3)


@settings(FUZZ, max_examples=20)
@given(content=_updates)
async def test_random_json_never_wedges_the_poller(
    running: Telegram, caplog: pytest.LogCaptureFixture, content: dict[str, Any]
) -> None:
    caplog.set_level(logging.WARNING)
    server = running.server
    update_id = server.push(content)["update_id"]
    await server.wait(lambda: server.offset > update_id)
    server.update(server.message(f"after update {update_id}"))
    await server.wait(lambda: f"echo: after update {update_id}" in server.texts())
    records = [r for r in caplog.records if r.name.startswith(("adapters", "telegram", "core"))]
    assert not [r for r in records if r.exc_info or r.levelno >= logging.ERROR]


def test_the_corpus_is_what_the_issue_names() -> None:
    """The four kinds of the issue are in the corpus, and at least ten more."""
    assert {
        "a chat without type",
        "entities: [null]",
        "a date that is a string",
        "a garbage callback_query",
    } <= BAD.keys()
    assert len(BAD) >= 14
