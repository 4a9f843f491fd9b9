"""A fake Telegram Bot API server on 127.0.0.1, for the real python-telegram-bot client.

It implements the methods the adapter calls, records every call, queues updates for
``getUpdates`` (long polling; the offset of each poll is recorded in ``polls``, and an
update is dropped once a poll's offset has gone past it, as Telegram confirms them) and can
answer the next call of a method with an error (a 429 with ``retry_after``, a 502, ...) or
with any body at all (``answer_next``).
"""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from tests.adapters.helpers import LoopbackServer

TOKEN = "123456789:AAE-test-token-for-the-fake-server-0001"
BOT = {
    "id": 123456789,
    "is_bot": True,
    "first_name": "Sol",
    "username": "sol_bot",
    "can_join_groups": True,
    "can_read_all_group_messages": False,
    "supports_inline_queries": False,
}


@dataclass
class Call:
    method: str
    params: dict[str, Any]


@dataclass
class FakeTelegram(LoopbackServer):
    token: str = TOKEN
    calls: list[Call] = field(default_factory=list)
    updates: list[dict[str, Any]] = field(default_factory=list)
    failures: dict[str, list[tuple[int, dict[str, Any]]]] = field(default_factory=dict)
    failed: list[tuple[str, int]] = field(default_factory=list)
    """(method, status) of each injected failure (or ``answer_next`` body: 200) served."""
    polls: list[tuple[float, int]] = field(default_factory=list)
    """(time.monotonic(), offset) of each getUpdates call, in order."""
    raw: dict[str, list[bytes]] = field(default_factory=dict)
    silent: bool = False
    """getUpdates is taken in and never answered (a connection dropped without closing)
    while this is set."""
    _update_ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))
    _message_ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1000))

    async def start(self) -> None:
        app = web.Application()
        app.router.add_route("*", "/bot{token}/{method}", self._handle)
        await self.serve(app)

    # --- what tests use ------------------------------------------------------------------
    async def speak_again(self) -> None:
        """End the silence: the polls held are answered."""
        self.silent = False
        await self._notify()

    def fail_next(self, method: str, status: int, **body: Any) -> None:
        """Answer the next call of ``method`` with ``status`` (recorded in ``failed``)."""
        payload = {"ok": False, "error_code": status, "description": "injected failure", **body}
        self.failures.setdefault(method, []).append((status, payload))

    def answer_next(self, method: str, body: bytes) -> None:
        """Answer the next call of ``method`` with ``body`` (status 200), whatever it is."""
        self.raw.setdefault(method, []).append(body)

    def update(self, message: dict[str, Any]) -> dict[str, Any]:
        """An update carrying ``message``, queued for getUpdates."""
        return self.push({"message": message})

    def push(self, content: dict[str, Any]) -> dict[str, Any]:
        """An update with the next id and ``content`` (anything at all), queued."""
        update = {"update_id": next(self._update_ids), **content}
        self.updates.append(update)
        asyncio.get_running_loop().create_task(self._notify())
        return update

    @property
    def offset(self) -> int:
        """The offset of the latest getUpdates call (0 before any)."""
        return self.polls[-1][1] if self.polls else 0

    def message(
        self,
        text: str,
        *,
        user: dict[str, Any] | None = None,
        chat: dict[str, Any] | None = None,
        **extra: Any,
    ) -> dict[str, Any]:
        user = user or person(1)
        chat = chat or {"id": user["id"], "type": "private", "first_name": user["first_name"]}
        message = {
            "message_id": next(self._message_ids),
            "date": int(time.time()),
            "chat": chat,
            "from": user,
            "text": text,
            **extra,
        }
        return message

    def sent(self, method: str = "sendMessage") -> list[dict[str, Any]]:
        return [c.params for c in self.calls if c.method == method]

    def texts(self) -> list[str]:
        """What each message the bot sent says now, after its edits, in order."""
        latest: dict[int, str] = {}
        for call in self.calls:
            if call.method in ("sendMessage", "editMessageText") and "_message_id" in call.params:
                latest[call.params["_message_id"]] = call.params.get("text", "")
        return list(latest.values())

    async def wait_for(self, method: str, count: int = 1, within: float = 10.0) -> None:
        await self.wait(lambda: len(self.sent(method)) >= count, within)

    # --- the Bot API ---------------------------------------------------------------------
    async def _handle(self, request: web.Request) -> web.Response:
        method = request.match_info["method"]
        if request.match_info["token"] != self.token:
            return _reply(401, {"ok": False, "error_code": 401, "description": "Unauthorized"})
        params = await _params(request)
        if method != "getUpdates":
            self.calls.append(Call(method, params))
            await self._notify()
        if method == "getUpdates":
            self.polls.append((time.monotonic(), int(params.get("offset", 0) or 0)))
            await self._notify()
            if self.silent:
                async with self._changed:
                    await self._changed.wait_for(lambda: not self.silent)
            if self.raw.get(method):
                self.failed.append((method, 200))
                return web.Response(body=self.raw[method].pop(0), content_type="application/json")
        queued = self.failures.get(method)
        if queued:
            status, payload = queued.pop(0)
            self.failed.append((method, status))
            await self._notify()
            return _reply(status, payload)
        if method == "getUpdates":
            return _ok(await self._get_updates(params))
        if method == "getMe":
            return _ok(BOT)
        if method in ("sendMessage", "editMessageText"):
            message = self._sent_message(params)
            params["_message_id"] = message["message_id"]
            return _ok(message)
        return _ok(True)

    async def _get_updates(self, params: dict[str, Any]) -> list[dict[str, Any]]:
        offset = int(params.get("offset", 0) or 0)
        self.updates = [u for u in self.updates if u["update_id"] >= offset]
        timeout = min(float(params.get("timeout", 0) or 0), 1.0)
        if not self.updates and timeout:
            async with self._changed:
                try:
                    await asyncio.wait_for(
                        self._changed.wait_for(lambda: bool(self.updates)), timeout
                    )
                except TimeoutError:
                    pass
        return list(self.updates)

    def _sent_message(self, params: dict[str, Any]) -> dict[str, Any]:
        chat_id = int(params["chat_id"])
        message_id = int(params.get("message_id") or next(self._message_ids))
        message: dict[str, Any] = {
            "message_id": message_id,
            "date": int(time.time()),
            "chat": {"id": chat_id, "type": "private" if chat_id > 0 else "supergroup"},
            "from": BOT,
            "text": params.get("text", ""),
        }
        if params.get("message_thread_id"):
            message["message_thread_id"] = int(params["message_thread_id"])
            message["is_topic_message"] = True
        return message


def person(n: int, *, is_bot: bool = False) -> dict[str, Any]:
    return {"id": 1000 + n, "is_bot": is_bot, "first_name": f"User{n}", "username": f"user{n}"}


def group(chat_id: int = -1001, *, forum: bool = False) -> dict[str, Any]:
    return {"id": chat_id, "type": "supergroup", "title": "Lounge", "is_forum": forum}


def mention(text: str, name: str) -> list[dict[str, Any]]:
    """The entity Telegram adds for ``@name`` in ``text`` (ASCII text: UTF-16 = str offsets)."""
    start = text.index("@" + name)
    return [{"type": "mention", "offset": start, "length": len(name) + 1}]


def command(text: str) -> list[dict[str, Any]]:
    return [{"type": "bot_command", "offset": 0, "length": len(text.split()[0])}]


async def _params(request: web.Request) -> dict[str, Any]:
    if request.content_type == "application/json":
        data: dict[str, Any] = await request.json()
        return data
    form = await request.post()
    params: dict[str, Any] = {}
    for key, value in form.items():
        text = str(value)
        try:
            params[key] = json.loads(text) if text[:1] in "[{" else text
        except ValueError:
            params[key] = text
    return params


def _ok(result: Any) -> web.Response:
    return _reply(200, {"ok": True, "result": result})


def _reply(status: int, payload: dict[str, Any]) -> web.Response:
    return web.Response(status=status, text=json.dumps(payload), content_type="application/json")
