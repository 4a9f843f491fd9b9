"""The browser: chat with a bot in a web page, with no platform and no token.

``socialbot web`` serves one page and a WebSocket on ``SOCIALBOT_WEB_HOST`` (default
127.0.0.1, this machine only) and ``SOCIALBOT_WEB_PORT`` (8080). Each browser is a
person of its own: the page gives it a random token in a cookie (HttpOnly,
SameSite=Strict), and its messages are a direct message from a hash of that token (the
token itself is never logged or stored), so two browsers never share a conversation or a
memory scope. There are no accounts: on loopback that is fine; where others can reach
the port, set ``SOCIALBOT_WEB_PASSWORD``. Then the page first asks for it, and a browser
that gave it carries a second cookie, an HMAC of its own id keyed with the password, which
the page and the WebSocket check (changing the password signs every browser out).

The WebSocket speaks JSON. In: ``{"text": "..."}``. Out, for each message:
``{"type": "typing"}``, then ``{"type": "piece", "text": ...}`` as the reply streams,
then ``{"type": "reply", "text": ..., "failed": bool, "reaction": emoji or ""}``; also
``{"type": "reaction", "emoji": ...}``, ``{"type": "notice", "text": ...}`` (only this
browser sees it: the privacy and moderation notices), ``{"type": "error", "text": ...}``
for a frame it cannot take (not JSON, not an object, no text or an empty one, the bot
shutting down; the connection stays open), and unprompted replies (reminders) as
``reply``. A message sent while the bot is still starting is answered once it has
started (it waits up to :data:`STARTING_WAIT_S`). On connecting, a page first gets
``{"type": "history", "turns": [{"role": "user" or "assistant", "text": ...}, ...]}``:
the conversation as the bot keeps it (since the last ``/reset``, the last
:data:`HISTORY_TURNS` turns, redacted as stored), so a reopened page picks up where it
left off.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import functools
import hashlib
import hmac
import json
import logging
import re
import secrets
from collections import defaultdict
from importlib import resources
from itertools import count
from typing import Any
from urllib.parse import urlsplit

from aiohttp import WSMsgType, web

from adapters.base import BotCore, PlatformAdapter, bound_port
from core.errors import ConfigError
from core.settings import Settings
from core.types import Message, Place, PlaceKind, Reply, Speaker

log = logging.getLogger(__name__)

PLATFORM = "web"
COOKIE = "socialbot_web"
PASS_COOKIE = "socialbot_web_pass"
WRONG_PASSWORD_DELAY = 1.0  # seconds, against guessing
LOOPBACK = {"127.0.0.1", "::1", "localhost"}
HISTORY_TURNS = 100
STARTING_WAIT_S = 120.0  # how long a message sent while the bot starts waits for it


@functools.cache
def _page() -> str:
    return resources.files("adapters").joinpath("web_page.html").read_text(encoding="utf-8")


def place_of(user: str) -> Place:
    return Place(PLATFORM, f"dm:{user}", PlaceKind.DM)


class WebChannel:
    """One turn's answers, sent to the browser that asked."""

    def __init__(self, socket: web.WebSocketResponse, receipt: str = "") -> None:
        self.socket = socket
        self._receipt = receipt
        """The id of the message this channel answers, until its receipt is sent."""

    async def _send(self, frame: dict[str, Any]) -> None:
        if self._receipt:  # the turn's first frame: the message was accepted before it
            await self.received()
        await self._frame(frame)

    async def _frame(self, frame: dict[str, Any]) -> None:
        if self.socket.closed:
            return  # the tab was closed: the turn still finishes and is stored
        with contextlib.suppress(ConnectionError, RuntimeError):
            await self.socket.send_json(frame)

    async def typing(self) -> None:
        await self._send({"type": "typing"})

    async def stream(self, piece: str) -> None:
        await self._send({"type": "piece", "text": piece})

    async def react(self, emoji: str) -> None:
        await self._send({"type": "reaction", "emoji": emoji})

    async def whisper(self, text: str) -> None:
        await self._send({"type": "notice", "text": text})

    async def error(self, text: str) -> None:
        """A frame that could not be taken (the connection stays open)."""
        await self._frame({"type": "error", "text": text})

    async def received(self) -> None:
        """The receipt: the bot has the message (in its inbox) and will answer it; sent
        once, before anything the turn sends."""
        receipt, self._receipt = self._receipt, ""
        if receipt:
            await self._frame({"type": "received", "id": receipt})

    async def history(self, turns: list[tuple[str, str]]) -> None:
        frame = [{"role": role, "text": text} for role, text in turns]
        await self._send({"type": "history", "turns": frame})

    async def send(self, reply: Reply) -> None:
        frame = {"type": "reply", "text": reply.text, "failed": reply.failed}
        await self._send({**frame, "reaction": reply.reaction})


class WebAdapter(PlatformAdapter):
    platform = PLATFORM

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        self.port = 0
        self._runner: web.AppRunner | None = None
        self._sockets: dict[str, set[web.WebSocketResponse]] = defaultdict(set)
        self._ids = count(1)
        self._run = secrets.token_hex(4)
        self._stopping = False
        self._phase = asyncio.Event()
        """Set once the bot has started, or intake has stopped (whichever comes first)."""

    async def start(self, bot: BotCore) -> None:
        await super().start(bot)
        self._phase.set()

    async def stop_intake(self) -> None:
        self._stopping = True
        self._phase.set()
        await super().stop_intake()

    async def _until_started(self) -> bool:
        """Wait (a while) for the bot to start; True when it takes messages now."""
        if not self._phase.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._phase.wait(), STARTING_WAIT_S)
        return self.bot is not None and self.accepting

    async def login(self) -> None:
        """Start listening (nothing is answered until :meth:`start`)."""
        host, port = self.settings.web_host, self.settings.web_port
        app = web.Application(client_max_size=1 << 16)
        app.router.add_get("/", self._on_page)
        app.router.add_post("/login", self._on_login)
        app.router.add_get("/ws", self._on_socket)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port)
        try:
            await site.start()
        except OSError as error:
            await self._runner.cleanup()
            self._runner = None
            why = "is in use" if error.errno == errno.EADDRINUSE else f"failed ({error.strerror})"
            raise ConfigError(
                f"the web chat cannot listen on {host}:{port}: that address {why}; "
                "set SOCIALBOT_WEB_PORT (or SOCIALBOT_WEB_HOST) to another"
            ) from None
        self.port = bound_port(site)
        if host not in LOOPBACK and not self._password:
            log.warning(
                "web: listening on %s: anyone who can reach it can chat with the bot "
                "(set SOCIALBOT_WEB_PASSWORD to ask for a password)",
                host,
            )

    @property
    def _password(self) -> bytes:
        return self.settings.web_password.get_secret_value().encode()

    def _signed_in(self, request: web.Request, cookie: str) -> bool:
        """No password is set, or this browser gave it (its pass cookie matches)."""
        if not self._password:
            return True
        given = request.cookies.get(PASS_COOKIE, "")
        return (
            bool(cookie) and given.isascii() and hmac.compare_digest(given, self._pass_for(cookie))
        )

    def _pass_for(self, cookie: str) -> str:
        return hmac.new(self._password, cookie.encode(), hashlib.sha256).hexdigest()

    @property
    def url(self) -> str:
        host = self.settings.web_host
        shown = "127.0.0.1" if host in ("0.0.0.0", "::", "") else host
        return f"http://{'[' + shown + ']' if ':' in shown else shown}:{self.port}/"

    @property
    def where(self) -> str:
        return f"the web page {self.url}"

    async def close(self) -> None:
        self._stopping = True
        self._phase.set()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        for sockets in list(self._sockets.values()):
            for socket in list(sockets):
                await socket.close()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def send_to(self, place: Place, text: str) -> None:
        """Unprompted replies (reminders) go to every open tab of that browser."""
        user = place.channel.removeprefix("dm:")
        for socket in list(self._sockets.get(user, ())):
            await WebChannel(socket).send(Reply(text, place))
        if not self._sockets.get(user):
            log.info("web: nobody is connected to receive an unprompted reply")

    # --- HTTP ------------------------------------------------------------------------------

    async def _on_page(self, request: web.Request) -> web.Response:
        cookie = _cookie(request)
        if self._signed_in(request, cookie):
            response = _html(_page())
        else:
            response = _html(_login_page())  # the chat only once the password is given
        if not cookie:
            response.set_cookie(
                COOKIE,
                secrets.token_urlsafe(24),
                max_age=10 * 365 * 86400,
                httponly=True,
                samesite="Strict",
                secure=request.secure,
            )
        return response

    async def _on_login(self, request: web.Request) -> web.Response:
        cookie = _cookie(request)
        form = await request.post()
        given = str(form.get("password", "")).encode()
        if not cookie or not self._password:
            return _see_page()  # open the page first (it sets the id); or no password is set
        if not hmac.compare_digest(given, self._password):
            log.warning("web: a wrong password was given")
            await asyncio.sleep(WRONG_PASSWORD_DELAY)
            return _html(_login_page(wrong=True), status=403)
        response = _see_page()
        response.set_cookie(
            PASS_COOKIE,
            self._pass_for(cookie),
            max_age=365 * 86400,
            httponly=True,
            samesite="Strict",
            secure=request.secure,
        )
        return response

    async def _on_socket(self, request: web.Request) -> web.StreamResponse:
        origin = request.headers.get("Origin")
        if origin and urlsplit(origin).netloc != request.host:
            log.warning("web: refused a connection from another site's page")
            return web.Response(status=403, text="connections from other sites are refused")
        cookie = _cookie(request)
        if not cookie:
            return web.Response(status=401, text="open the chat page first: it sets your id")
        if not self._signed_in(request, cookie):
            return web.Response(status=401, text="open the chat page and give the password")
        user = user_id(cookie)
        # room for the longest message the bot takes, in UTF-8 and JSON escapes, so that a
        # long one gets the bot's own "too long" answer rather than a closed connection
        room = max(1 << 16, 12 * self.settings.max_message_chars + 1024)
        socket = web.WebSocketResponse(heartbeat=30, max_msg_size=room)
        await socket.prepare(request)
        self._sockets[user].add(socket)
        # what a frame says is taken once the history is sent (after the bot has started)
        opened = self._spawn(self._send_history(user, WebChannel(socket)))
        try:
            async for frame in socket:
                if frame.type is WSMsgType.TEXT:
                    await self._on_frame(user, socket, frame.data, opened)
                elif frame.type is WSMsgType.BINARY:
                    await WebChannel(socket).error("send text frames")
        finally:
            self._sockets[user].discard(socket)
            if not self._sockets[user]:
                del self._sockets[user]
        return socket

    async def _send_history(self, user: str, channel: WebChannel) -> None:
        """What the bot keeps of this browser's conversation, read in its own scope (once
        the bot has started; none when it does not)."""
        turns: list[tuple[str, str]] = []
        bot = self.bot if await self._until_started() else None
        if bot is not None:
            try:
                kept = await bot.history(
                    Message(Speaker(PLATFORM, user), place_of(user), ""), limit=HISTORY_TURNS
                )
                turns = [(t.role.value, t.text) for t in kept]
            except Exception:  # the chat itself still works
                log.exception("web: could not read a conversation's history")
        await channel.history(turns)

    async def _on_frame(
        self, user: str, socket: web.WebSocketResponse, data: str, opened: asyncio.Task[None]
    ) -> None:
        await self.received()
        channel = WebChannel(socket)
        try:
            frame = json.loads(data)
        except (ValueError, RecursionError):  # not JSON, or nested too deep to read
            frame = None
        text = frame.get("text") if isinstance(frame, dict) else None
        if not isinstance(text, str):
            await channel.error('send {"text": "your message"}')
            return
        if not text.strip():
            await channel.error("type a message first")
            return
        if self._stopping:
            await channel.error("the bot is shutting down")
            return
        message = Message(
            Speaker(PLATFORM, user, "you"),
            place_of(user),
            text,
            id=f"{self._run}-{next(self._ids)}",  # unique across restarts (the inbox's key)
            mentions_bot=True,
        )
        # the next frame is read while this one is answered; the bot keeps their order
        self._spawn(self._take(message, WebChannel(socket, receipt=message.id), opened))

    async def _take(
        self, message: Message, channel: WebChannel, opened: asyncio.Task[None]
    ) -> None:
        """Hand a message to the bot after the history (and so after the bot has started)."""
        with contextlib.suppress(Exception):  # the history's own failure is logged there
            await asyncio.shield(opened)
        if await self._until_started():
            if await self.deliver(message, channel):
                await channel.received()
        elif self._stopping:
            await channel.error("the bot is shutting down")
        else:
            await channel.error("the bot is still starting: send it again in a moment")


_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; script-src 'unsafe-inline'; "
    "style-src 'unsafe-inline'; connect-src 'self'; form-action 'self'",
    "X-Content-Type-Options": "nosniff",
}


def _html(text: str, status: int = 200) -> web.Response:
    return web.Response(text=text, status=status, content_type="text/html", headers=_HEADERS)


def _see_page() -> web.Response:
    return web.Response(status=303, headers={"Location": "/"})


def _login_page(wrong: bool = False) -> str:
    note = '<p class="wrong">That is not the password.</p>' if wrong else ""
    return (
        "<!doctype html><html lang=en><meta charset=utf-8>"
        '<meta name=viewport content="width=device-width, initial-scale=1">'
        "<title>socialbot</title><style>body{font:16px system-ui,sans-serif;max-width:22rem;"
        "margin:15vh auto;padding:0 1rem}input,button{font:inherit;padding:.4rem}"
        ".wrong{color:#b00}</style><h1>socialbot</h1>"
        f"<p>This chat asks for a password.</p>{note}"
        '<form method=post action="/login"><input type=password name=password '
        "autocomplete=current-password aria-label=Password autofocus required> "
        "<button>Chat</button></form></html>"
    )


def user_id(cookie: str) -> str:
    """The id a browser speaks as: a hash of its cookie, so that logs and the database
    (which hashes user ids again) never hold the cookie, the browser's only credential."""
    return hashlib.sha256(cookie.encode()).hexdigest()[:32]


def _cookie(request: web.Request) -> str:
    """The browser's cookie, as the page set it; "" when missing or not one of ours."""
    value = request.cookies.get(COOKIE, "")
    return value if re.fullmatch(r"[A-Za-z0-9_-]{16,64}", value) else ""
