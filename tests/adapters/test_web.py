"""The browser chat: the page, the WebSocket protocol, one person per browser, bad frames,
other sites' pages, a port in use, and `socialbot web` end to end."""

from __future__ import annotations

import asyncio
import json
import logging
import re
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from hypothesis import given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from pydantic import SecretStr
from yarl import URL

from adapters.runner import serve
from adapters.web import COOKIE, WebAdapter, place_of, user_id
from core import testing
from core.bot import Bot
from core.cli import build_parser
from core.errors import ConfigError
from core.generation.fake import FakeGenerator
from core.settings import BotProfile, Settings
from tests.adapters.helpers import FUZZ, json_values, without_platform_env


@pytest.fixture
async def web(bot: Bot, settings: Settings) -> AsyncIterator[WebAdapter]:
    adapter = WebAdapter(settings.model_copy(update={"web_port": 0}))
    await adapter.login()
    await adapter.start(bot)
    try:
        yield adapter
    finally:
        await adapter.stop_intake()
        await bot.idle()
        await adapter.close()


class Browser:
    """A browser: its own cookie jar, the page opened once, then the chat socket."""

    def __init__(self, base: str) -> None:
        self.base = base
        self.session = aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))
        self.socket: aiohttp.ClientWebSocketResponse | None = None
        self.set_cookie = ""
        self.history: list[dict[str, str]] = []

    @property
    def cookie(self) -> str:
        return self.session.cookie_jar.filter_cookies(URL(self.base))[COOKIE].value

    async def open(self) -> str:
        async with self.session.get(self.base) as response:
            assert response.status == 200
            page = await response.text()
            self.set_cookie = response.headers.get("Set-Cookie", "")
        await self.connect()
        return page

    async def connect(self) -> None:
        """The chat socket, whose first frame is the kept conversation."""
        if self.socket is not None:
            await self.socket.close()
        self.socket = await self.session.ws_connect(self.base + "ws")
        first = await asyncio.wait_for(self.socket.receive_json(), 10)
        assert first["type"] == "history"
        self.history = first["turns"]

    async def send(self, frame: Any) -> None:
        assert self.socket is not None
        if isinstance(frame, str):
            await self.socket.send_str(frame)
        else:
            await self.socket.send_json(frame)

    async def frames_until(self, kind: str) -> list[dict[str, Any]]:
        assert self.socket is not None
        frames: list[dict[str, Any]] = []
        while not frames or frames[-1]["type"] != kind:
            frames.append(await asyncio.wait_for(self.socket.receive_json(), 10))
        return frames

    async def say(self, text: str) -> str:
        await self.send({"text": text})
        return str((await self.frames_until("reply"))[-1]["text"])

    async def close(self) -> None:
        if self.socket is not None:
            await self.socket.close()
        await self.session.close()


@pytest.fixture
async def browsers(web: WebAdapter) -> AsyncIterator[list[Browser]]:
    opened = [Browser(web.url), Browser(web.url)]
    try:
        yield opened
    finally:
        for browser in opened:
            await browser.close()


async def test_the_page_and_a_streamed_reply(
    web: WebAdapter, browsers: list[Browser], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    browser = browsers[0]
    page = await browser.open()
    assert "<title>socialbot</title>" in page and "/ws" in page
    assert len(browser.cookie) >= 16 and browser.cookie in browser.set_cookie
    assert "HttpOnly" in browser.set_cookie and "SameSite=Strict" in browser.set_cookie
    await browser.send({"text": "hello there"})
    frames = await browser.frames_until("reply")
    # the receipt (the bot has it, in its inbox), then the turn's frames
    assert frames[0]["type"] == "received" and frames[0]["id"]
    assert frames[1] == {"type": "typing"}
    pieces = [f["text"] for f in frames if f["type"] == "piece"]
    assert len(pieces) >= 2 and "".join(pieces).strip() == "echo: hello there"
    assert frames[-1] == {
        "type": "reply",
        "text": "echo: hello there",
        "failed": False,
        "reaction": "",
    }


async def test_each_browser_is_a_person_of_its_own(
    bot: Bot, fake: FakeGenerator, browsers: list[Browser]
) -> None:
    ann, bob = browsers
    await ann.open()
    await bob.open()
    assert await ann.say("my cat is called Pixel") == "echo: my cat is called Pixel"
    assert await bob.say("what is my cat called?") == "echo: what is my cat called?"
    told_bob = "\n".join(m.content for m in fake.prompts[-1])
    assert "Pixel" not in told_bob  # not in Bob's window, memories or summary
    assert "what is my cat called?" in told_bob
    exported = json.loads(await bob.say("/export"))
    assert "Pixel" not in json.dumps(exported)
    assert "Pixel" in json.dumps(json.loads(await ann.say("/export")))


async def test_a_reopened_page_shows_the_conversation_the_bot_keeps(
    browsers: list[Browser],
) -> None:
    ann, bob = browsers
    await ann.open()
    assert ann.history == []
    await ann.say("my cat is called Pixel")
    await ann.say("write to me at ann@example.org")
    await ann.connect()  # the page reopened, or the connection came back
    assert ann.history == [
        {"role": "user", "text": "my cat is called Pixel"},
        {"role": "assistant", "text": "echo: my cat is called Pixel"},
        {"role": "user", "text": "write to me at [email]"},  # as kept: redacted
        {"role": "assistant", "text": "echo: write to me at [email]"},
    ]
    await bob.open()
    assert bob.history == []  # another browser sees none of it
    await ann.say("/reset")
    await ann.connect()
    assert ann.history == []


BAD_FRAMES: list[Any] = [
    "not json",
    "{",
    "null",
    "42",
    '"just a string"',
    "[" * 40_000 + "]" * 40_000,  # nested too deep for Python's JSON reader (80 kB)
    '{"text": ' * 8_000 + '"x"' + "}" * 8_000,
    {"txt": "hi"},
    {"text": 42},
    {"text": None},
    {"text": ["hi"]},
    {"text": {"text": "hi"}},
    [1, 2],
    [{"text": "hi"}],
]


async def test_frames_it_cannot_read_get_an_error_and_the_chat_goes_on(
    web: WebAdapter, browsers: list[Browser], caplog: pytest.LogCaptureFixture
) -> None:
    browser = browsers[0]
    await browser.open()
    for bad in BAD_FRAMES:
        await browser.send(bad)
        (frame,) = await browser.frames_until("error")
        assert frame["text"] == 'send {"text": "your message"}'
    assert browser.socket is not None
    await browser.socket.send_bytes(b"\x00\x01")
    assert (await browser.frames_until("error"))[-1]["text"] == "send text frames"
    assert await browser.say("still there?") == "echo: still there?"
    assert not browser.socket.closed
    assert not [r for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR]


async def test_an_empty_message_gets_a_hint(browsers: list[Browser]) -> None:
    browser = browsers[0]
    await browser.open()
    for empty in ("", "   ", "\n\t "):
        await browser.send({"text": empty})
        (frame,) = await browser.frames_until("error")
        assert frame["text"] == "type a message first"
    assert await browser.say("hello") == "echo: hello"


async def test_a_message_sent_while_the_bot_starts_is_answered_once_it_has(
    bot: Bot, settings: Settings
) -> None:
    adapter = WebAdapter(settings.model_copy(update={"web_port": 0}))
    await adapter.login()  # listening, the bot not started yet
    browser = Browser(adapter.url)
    try:
        async with browser.session.get(adapter.url) as response:
            assert response.status == 200
        browser.socket = await browser.session.ws_connect(adapter.url + "ws")
        await browser.send({"text": "are you up?"})
        await adapter.wait_events(1)
        await adapter.start(bot)
        frames = await browser.frames_until("reply")
        assert frames[0] == {"type": "history", "turns": []}
        assert frames[-1]["text"] == "echo: are you up?"
        assert not [f for f in frames if f["type"] == "error"]
        await adapter.stop_intake()  # and while it stops, it says so
        await browser.send({"text": "one more"})
        assert (await browser.frames_until("error"))[-1]["text"] == "the bot is shutting down"
    finally:
        await browser.close()
        await adapter.stop_intake()
        await bot.idle()
        await adapter.close()


_json = json_values(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    st.sampled_from(["text", "type", ""]) | st.text(max_size=4),
    list_size=3,
    object_size=3,
    max_leaves=12,
)


@hypothesis_settings(FUZZ, max_examples=25)
@given(frame=_json)
async def test_random_frames_are_answered_and_the_socket_stays_open(
    browsers: list[Browser], frame: Any
) -> None:
    browser = browsers[0]
    if browser.socket is None:
        await browser.open()
    if isinstance(frame, dict) and isinstance(frame.get("text"), str):
        frame["text"] = "a fuzzed frame"  # a message: answered (its text is not the point)
        await browser.send(frame)
        assert (await browser.frames_until("reply"))[-1]["text"] == "echo: a fuzzed frame"
    else:
        await browser.send(frame)
        assert (await browser.frames_until("error"))[-1]["type"] == "error"
    assert browser.socket is not None and not browser.socket.closed


async def test_a_huge_message_is_refused_and_nothing_is_lost(
    bot: Bot, browsers: list[Browser]
) -> None:
    browser = browsers[0]
    await browser.open()
    for size in (bot.settings.max_message_chars + 1, 70_000):  # 70 kB: over 64 KiB frames
        assert "too long" in await browser.say("x" * size)
    assert await browser.say("short one") == "echo: short one"


async def test_no_cookie_or_another_sites_page_is_refused(web: WebAdapter) -> None:
    async with aiohttp.ClientSession() as session:
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await session.ws_connect(web.url + "ws")
        assert refused.value.status == 401
    browser = Browser(web.url)
    try:
        await browser.open()
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await browser.session.ws_connect(web.url + "ws", origin="https://evil.example")
        assert refused.value.status == 403
    finally:
        await browser.close()


async def test_with_a_password_set_only_browsers_that_gave_it_can_chat(
    bot: Bot, settings: Settings, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("adapters.web.WRONG_PASSWORD_DELAY", 0.0)
    password = "correct horse battery staple"
    adapter = WebAdapter(
        settings.model_copy(update={"web_port": 0, "web_password": SecretStr(password)})
    )
    await adapter.login()
    await adapter.start(bot)
    browser, other = Browser(adapter.url), Browser(adapter.url)
    try:
        async with browser.session.get(adapter.url) as response:
            page = await response.text()
        assert "type=password" in page and "/ws" not in page  # the login form, not the chat
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await browser.session.ws_connect(adapter.url + "ws")
        assert refused.value.status == 401

        login = adapter.url + "login"
        async with browser.session.post(login, data={"password": "guess"}) as response:
            assert response.status == 403 and "not the password" in await response.text()
        async with browser.session.post(login, data={"password": password}) as response:
            assert response.status == 200 and "/ws" in await response.text()  # back to the chat
        await browser.connect()
        assert await browser.say("hello there") == "echo: hello there"

        # the pass is this browser's own: another id with a copied pass cookie gets nothing
        async with other.session.get(adapter.url) as response:
            assert "/ws" not in await response.text()
        stolen = browser.session.cookie_jar.filter_cookies(URL(adapter.url))["socialbot_web_pass"]
        other.session.cookie_jar.update_cookies(
            {"socialbot_web_pass": stolen.value}, URL(adapter.url)
        )
        with pytest.raises(aiohttp.WSServerHandshakeError):
            await other.session.ws_connect(adapter.url + "ws")
        assert password not in caplog.text
    finally:
        await browser.close()
        await other.close()
        await adapter.stop_intake()
        await bot.idle()
        await adapter.close()


async def test_reminders_and_other_unprompted_replies_reach_the_browser(
    bot: Bot, web: WebAdapter, browsers: list[Browser]
) -> None:
    browser = browsers[0]
    await browser.open()
    assert await bot.send_to(place_of(user_id(browser.cookie)), "time to call mum")
    assert (await browser.frames_until("reply"))[-1]["text"] == "time to call mum"


async def test_a_port_in_use_is_a_config_error_naming_the_setting(
    web: WebAdapter, settings: Settings
) -> None:
    taken = settings.model_copy(update={"web_port": web.port})
    with pytest.raises(ConfigError, match="SOCIALBOT_WEB_PORT"):
        await WebAdapter(taken).login()


async def test_socialbot_web_serves_until_stopped(settings: Settings, profile: BotProfile) -> None:
    args = build_parser().parse_args(["web", "--host", "127.0.0.1", "--port", "0"])
    assert (args.host, args.port) == ("127.0.0.1", 0)
    with pytest.raises(SystemExit):
        build_parser().parse_args(["web", "--port", "70000"])
    stop = asyncio.Event()
    adapter = WebAdapter(settings.model_copy(update={"web_port": 0}))
    started = asyncio.Event()

    async def open_bot(settings: Settings, profile: BotProfile) -> Bot:
        return await Bot.open(
            settings,
            profile,
            generator=FakeGenerator(),
            embedder=testing.FakeEmbedder(),
            emotions=testing.FakeEmotionReader(),
        )

    running = asyncio.create_task(
        serve(
            settings,
            profile,
            stop=stop,
            open_bot=open_bot,
            ready=lambda adapters: started.set(),
            adapters=[adapter],
        )
    )
    await asyncio.wait_for(started.wait(), 30)
    browser = Browser(adapter.url)
    try:
        await browser.open()
        assert await browser.say("hi web") == "echo: hi web"
    finally:
        await browser.close()
        stop.set()
        await asyncio.wait_for(running, 30)


@pytest.mark.model
async def test_socialbot_web_with_the_real_model_answers_and_stops_on_sigterm(
    tmp_path: Path, model_cache: Path
) -> None:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        *("-m", "core", "web", "--port", "0", "--data-dir", str(tmp_path / "data")),
        env={
            **without_platform_env(),
            "HF_HUB_OFFLINE": "1",
            "SOCIALBOT_CACHE_DIR": str(model_cache),
        },
        cwd=tmp_path,  # no .env of the developer's is read
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    assert process.stderr is not None
    started = b""
    try:
        while b"Ctrl-C" not in started:
            line = await asyncio.wait_for(process.stderr.readline(), 240)
            assert line, "socialbot web ended before it started answering"
            started += line
        url = re.search(rb"http://127\.0\.0\.1:\d+/", started)
        assert url is not None, started
        browser = Browser(url.group().decode())
        try:
            await browser.open()
            assert (await browser.say("Hello! How are you today?")).strip()
        finally:
            await browser.close()
    finally:
        process.send_signal(signal.SIGTERM)
        await asyncio.wait_for(process.communicate(), 120)
    assert process.returncode == 0
