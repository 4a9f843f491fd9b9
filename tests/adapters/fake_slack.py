"""A fake Slack Web API and Socket Mode server on 127.0.0.1, for the real slack-bolt app.

Web API methods answer under ``/api/<method>``; ``apps.connections.open`` hands out
``ws://.../link`` where the fake pushes event envelopes and records the client's
acknowledgements. Slash-command answers (``response_url``) land under ``/respond``.
"""

from __future__ import annotations

import hashlib
import hmac
import itertools
import json
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

from aiohttp import WSMsgType, web

from tests.adapters.helpers import LoopbackServer

BOT_TOKEN = "xoxb-1111-2222-fake-bot-token"
APP_TOKEN = "xapp-1-A111-fake-app-token"
SIGNING_SECRET = "8f742231b10e8888abcd99yyyzzz85a5"
TEAM = "T0001"
BOT_USER = "UBOT0001"
BOT_ID = "BBOT0001"


@dataclass
class Call:
    method: str
    params: dict[str, Any]


@dataclass
class FakeSlack(LoopbackServer):
    token: str = BOT_TOKEN
    calls: list[Call] = field(default_factory=list)
    acks: list[str] = field(default_factory=list)
    failures: dict[str, list[tuple[int, dict[str, str]]]] = field(default_factory=dict)
    connections: int = 0
    _sockets: list[web.WebSocketResponse] = field(default_factory=list)
    _ts: itertools.count[int] = field(default_factory=lambda: itertools.count(1))
    _events: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/api/{method}", self._api)
        app.router.add_get("/link", self._socket)
        app.router.add_post("/respond/{id}", self._respond)
        await self.serve(app)

    async def stop(self) -> None:
        for socket in self._sockets:
            await socket.close()
        await super().stop()

    # --- what tests use ------------------------------------------------------------------
    def fail_next(self, method: str, status: int, **headers: str) -> None:
        self.failures.setdefault(method, []).append((status, headers))

    def event(self, **event: Any) -> dict[str, Any]:
        """An ``event_callback`` body around ``event``."""
        event.setdefault("type", "message")
        event.setdefault(
            "ts", f"{time.time():.6f}".replace(".", "")[:10] + f".{next(self._ts):06d}"
        )
        event.setdefault("event_ts", event["ts"])
        return {
            "token": "legacy",
            "team_id": TEAM,
            "api_app_id": "A111",
            "event": event,
            "type": "event_callback",
            "event_id": f"Ev{next(self._events):08d}",
            "event_time": int(time.time()),
            "authorizations": [
                {"enterprise_id": None, "team_id": TEAM, "user_id": BOT_USER, "is_bot": True}
            ],
        }

    async def push(self, body: dict[str, Any], kind: str = "events_api") -> str:
        """Send an envelope over every open Socket Mode connection."""
        envelope_id = f"env-{next(self._ts)}"
        envelope = {
            "envelope_id": envelope_id,
            "type": kind,
            "accepts_response_payload": kind != "events_api",
            "payload": body,
        }
        for socket in list(self._sockets):
            await socket.send_str(json.dumps(envelope))
        return envelope_id

    async def disconnect_all(self) -> None:
        """Ask clients to reconnect, as Slack does when it rotates connections."""
        for socket in list(self._sockets):
            await socket.send_str(json.dumps({"type": "disconnect", "reason": "refresh_requested"}))
            await socket.close()

    def sent(self, method: str = "chat.postMessage") -> list[dict[str, Any]]:
        return [c.params for c in self.calls if c.method == method]

    def texts(self) -> list[str]:
        """What each message the bot posted says now, after its edits, in order."""
        latest: dict[str, str] = {}
        for call in self.calls:
            if call.method == "chat.postMessage" and "_ts" in call.params:
                latest[call.params["_ts"]] = call.params.get("text", "")
            elif call.method == "chat.update":
                latest[call.params["ts"]] = call.params.get("text", "")
        return list(latest.values())

    async def wait_for(self, method: str, count: int = 1, within: float = 10.0) -> None:
        await self.wait(lambda: len(self.sent(method)) >= count, within)

    async def wait_connected(self, count: int = 1, within: float = 10.0) -> None:
        await self.wait(lambda: self.connections >= count, within)

    # --- the server ----------------------------------------------------------------------
    async def _api(self, request: web.Request) -> web.Response:
        method = request.match_info["method"]
        if request.content_type == "application/json":
            params: dict[str, Any] = await request.json()
        else:
            params = dict(await request.post())
        auth = request.headers.get("Authorization", "")
        expected = APP_TOKEN if method == "apps.connections.open" else self.token
        if auth != f"Bearer {expected}":
            return web.json_response({"ok": False, "error": "invalid_auth"})
        self.calls.append(Call(method, params))
        await self._notify()
        queued = self.failures.get(method)
        if queued:
            status, headers = queued.pop(0)
            return web.json_response(
                {"ok": False, "error": "ratelimited"}, status=status, headers=headers
            )
        if method == "auth.test":
            return web.json_response(
                {
                    "ok": True,
                    "url": "https://fake.slack.com/",
                    "team": "Fake Team",
                    "user": "sol",
                    "team_id": TEAM,
                    "user_id": BOT_USER,
                    "bot_id": BOT_ID,
                }
            )
        if method == "apps.connections.open":
            return web.json_response({"ok": True, "url": self.url.replace("http", "ws") + "/link"})
        if method in ("chat.postMessage", "chat.update"):
            ts = params.get("ts") or f"1700000000.{next(self._ts):06d}"
            params["_ts"] = ts
            return web.json_response(
                {
                    "ok": True,
                    "channel": params.get("channel"),
                    "ts": ts,
                    "message": {"text": params.get("text"), "user": BOT_USER, "ts": ts},
                }
            )
        return web.json_response({"ok": True})

    async def _respond(self, request: web.Request) -> web.Response:
        self.calls.append(Call("response_url", await request.json()))
        await self._notify()
        return web.Response(text="ok")

    async def _socket(self, request: web.Request) -> web.WebSocketResponse:
        socket = web.WebSocketResponse()
        await socket.prepare(request)
        self._sockets.append(socket)
        self.connections += 1
        await self._notify()
        await socket.send_str(json.dumps({"type": "hello", "num_connections": 1}))
        async for frame in socket:
            if frame.type == WSMsgType.TEXT:
                data = json.loads(frame.data)
                if "envelope_id" in data:
                    self.acks.append(data["envelope_id"])
                    await self._notify()
        self._sockets.remove(socket)
        return socket


def signed(body: bytes, secret: str = SIGNING_SECRET, *, age: int = 0) -> dict[str, str]:
    """The headers Slack puts on an HTTP event: a timestamp and its HMAC signature."""
    ts = str(int(time.time()) - age)
    digest = hmac.new(secret.encode(), f"v0:{ts}:".encode() + body, hashlib.sha256)
    return {
        "X-Slack-Request-Timestamp": ts,
        "X-Slack-Signature": "v0=" + digest.hexdigest(),
        "Content-Type": "application/json",
    }


def slash_command(fake: FakeSlack, text: str, *, channel: str = "D0DM0001") -> dict[str, str]:
    return {
        "token": "legacy",
        "team_id": TEAM,
        "channel_id": channel,
        "channel_name": "directmessage" if channel.startswith("D") else "general",
        "user_id": "U0ALICE",
        "user_name": "alice",
        "command": "/socialbot",
        "text": text,
        "response_url": f"{fake.url}/respond/1",
        "trigger_id": f"trigger-{time.time()}",
    }


def form(data: dict[str, str]) -> bytes:
    return urlencode(data).encode()
