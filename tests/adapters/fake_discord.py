"""A fake Discord REST API and gateway on 127.0.0.1, for the real discord.py client.

REST under ``/api/v10``: the login calls, messages (create, edit; over 2,000
characters is refused as Discord does), typing, reactions, ``/gateway/bot``; the
application's global commands (``PUT /applications/{id}/commands``, recorded); an
interaction's callback (``POST /interactions/{id}/{token}/callback``) and its
webhook (edit or delete the original response, follow-ups and their edits), which
Discord authenticates by the token in the path, not the bot's. The gateway at ``/gw``
says HELLO, answers IDENTIFY with READY (with the application's id) and GUILD_CREATE
(one guild, a text channel and a thread), RESUME with RESUMED, heartbeats with acks,
and sends the MESSAGE_CREATE and INTERACTION_CREATE events tests push.
"""

from __future__ import annotations

import itertools
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from aiohttp import WSMsgType, web

from tests.adapters.helpers import LoopbackServer

TOKEN = "MTEzNzQyNDI0MjQyNDI0MjQy.GfAkE0.fake-discord-token-for-loopback-tests"
BOT_ID = "1137424242424242424"
APP_ID = "1137424242424242000"
GUILD = "900000000000000001"
CHANNEL = "900000000000000010"
THREAD = "900000000000000020"
DM_CHANNEL = "900000000000000030"
NOW = datetime(2026, 11, 23, tzinfo=UTC).isoformat()
ADMINISTRATOR = str(1 << 3)
APPLICATION_COMMAND, AUTOCOMPLETE = 2, 4
BOT_USER = {
    "id": BOT_ID,
    "username": "Sol",
    "discriminator": "0",
    "global_name": None,
    "avatar": None,
    "bot": True,
    "flags": 0,
}


def user(n: int, *, bot: bool = False) -> dict[str, Any]:
    return {
        "id": str(800000000000000000 + n),
        "username": f"user{n}",
        "discriminator": "0",
        "global_name": f"User {n}",
        "avatar": None,
        "bot": bot,
    }


def _member(who: dict[str, Any]) -> dict[str, Any]:
    return {"user": who, "roles": [], "joined_at": NOW, "deaf": False, "mute": False, "flags": 0}


def guild_create() -> dict[str, Any]:
    return {
        "id": GUILD,
        "name": "Fake Guild",
        "owner_id": user(1)["id"],
        "unavailable": False,
        "large": False,
        "member_count": 3,
        "features": [],
        "emojis": [],
        "stickers": [],
        "roles": [
            {
                "id": GUILD,
                "name": "@everyone",
                "permissions": "1071698660929",
                "position": 0,
                "color": 0,
                "hoist": False,
                "managed": False,
                "mentionable": False,
                "flags": 0,
            }
        ],
        "channels": [
            {
                "id": CHANNEL,
                "type": 0,
                "name": "general",
                "position": 0,
                "permission_overwrites": [],
                "nsfw": False,
                "parent_id": None,
            }
        ],
        "threads": [
            {
                "id": THREAD,
                "guild_id": GUILD,
                "parent_id": CHANNEL,
                "owner_id": user(1)["id"],
                "type": 11,
                "name": "a thread",
                "message_count": 1,
                "member_count": 2,
                "rate_limit_per_user": 0,
                "thread_metadata": {
                    "archived": False,
                    "auto_archive_duration": 1440,
                    "archive_timestamp": NOW,
                    "locked": False,
                },
            }
        ],
        "members": [_member(BOT_USER)],
        "voice_states": [],
        "presences": [],
        "stage_instances": [],
        "guild_scheduled_events": [],
        "verification_level": 0,
        "default_message_notifications": 0,
        "explicit_content_filter": 0,
        "mfa_level": 0,
        "premium_tier": 0,
        "system_channel_flags": 0,
        "nsfw_level": 0,
        "preferred_locale": "en-US",
        "joined_at": NOW,
    }


@dataclass
class Call:
    method: str
    path: str
    body: dict[str, Any]


@dataclass
class FakeDiscord(LoopbackServer):
    token: str = TOKEN
    calls: list[Call] = field(default_factory=list)
    identifies: list[dict[str, Any]] = field(default_factory=list)
    resumes: int = 0
    rate_limit_next: int = 0
    history: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    """Each channel's messages, as its history gives them (what the bot missed)."""
    refuse_commands: bool = False
    """Answer the commands' registration with an error, as for a bad command."""
    _sockets: list[web.WebSocketResponse] = field(default_factory=list)
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))
    _seq: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    @property
    def api(self) -> str:
        return f"{self.url}/api/v10"

    @property
    def gateway(self) -> str:
        return self.url.replace("http", "ws") + "/gw"

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/gw", self._gateway)
        app.router.add_route("*", "/api/v10/{path:.*}", self._rest)
        await self.serve(app)

    async def stop(self) -> None:
        for socket in list(self._sockets):
            await socket.close()
        await super().stop()

    # --- what tests use ------------------------------------------------------------------
    def snowflake(self) -> str:
        return str(1200000000000000000 + next(self._ids))

    def message(
        self,
        content: str,
        *,
        author: dict[str, Any] | None = None,
        channel: str = CHANNEL,
        guild: bool = True,
        mentions: list[dict[str, Any]] | None = None,
        **extra: Any,
    ) -> dict[str, Any]:
        author = author or user(1)
        data: dict[str, Any] = {
            "id": self.snowflake(),
            "channel_id": channel,
            "author": author,
            "content": content,
            "timestamp": NOW,
            "edited_timestamp": None,
            "tts": False,
            "mention_everyone": False,
            "mentions": mentions or [],
            "mention_roles": [],
            "attachments": [],
            "embeds": [],
            "pinned": False,
            "type": 0,
            **extra,
        }
        if guild:
            data["guild_id"] = GUILD
            data["member"] = {k: v for k, v in _member(author).items() if k != "user"}
        return data

    def interaction(
        self,
        name: str,
        options: dict[str, Any] | None = None,
        *,
        kind: int = APPLICATION_COMMAND,
        focused: str = "",
        author: dict[str, Any] | None = None,
        channel: str = CHANNEL,
        guild: bool = True,
    ) -> dict[str, Any]:
        """An INTERACTION_CREATE payload: the slash command ``/name`` with ``options``
        (name: value), or with ``kind=AUTOCOMPLETE`` the user typing the ``focused``
        option. Its token is ``token-`` and its id."""
        author = author or user(1)
        interaction_id = self.snowflake()
        given = [
            {
                "name": k,
                "type": _option_type(v),
                "value": v,
                **({"focused": True} if k == focused else {}),
            }
            for k, v in (options or {}).items()
        ]
        data: dict[str, Any] = {
            "id": interaction_id,
            "application_id": APP_ID,
            "type": kind,
            "token": f"token-{interaction_id}",
            "version": 1,
            "data": {
                "id": "1300000000000000001",
                "name": name,
                "type": 1,
                **({"options": given} if given else {}),
            },
            "channel_id": channel,
            "locale": "en-US",
            "entitlements": [],
            "app_permissions": "1071698660929",
            "attachment_size_limit": 8 * 1024 * 1024,
        }
        if guild:
            member = _member(author) | {"permissions": "1071698660929"}
            parent = CHANNEL if channel == THREAD else None
            data |= {
                "guild_id": GUILD,
                "guild_locale": "en-US",
                "member": member,
                "channel": {
                    "id": channel,
                    "type": 11 if channel == THREAD else 0,
                    "guild_id": GUILD,
                    "name": "general",
                    "parent_id": parent,
                    "permissions": "1071698660929",
                },
                "context": 0,
                "authorizing_integration_owners": {"0": GUILD},
            }
        else:
            data |= {
                "user": author,
                "channel": {"id": channel, "type": 1, "recipients": [author]},
                "context": 1,
                "authorizing_integration_owners": {"0": GUILD},
            }
        return data

    async def dispatch(self, event: str, data: dict[str, Any]) -> None:
        for socket in list(self._sockets):
            await self._send(socket, event, data)

    async def drop_connections(self) -> None:
        """Close every gateway connection the way a network drop or Discord would."""
        for socket in list(self._sockets):
            await socket.close(code=4000, message=b"unknown error")

    @property
    def sessions(self) -> int:
        """Gateway connections open and identified or resumed (a dropped one is gone)."""
        return len(self._sockets)

    async def wait_sessions(self, started: int, within: float = 10.0) -> None:
        """Wait until ``started`` sessions were started or resumed in all, and exactly
        one connection is open: events the test dispatches from then on reach the
        client on it."""
        await self.wait(
            lambda: len(self.identifies) + self.resumes >= started and self.sessions == 1, within
        )

    def sent(self, method: str = "POST", suffix: str = "/messages") -> list[dict[str, Any]]:
        return [c.body for c in self.calls if c.method == method and c.path.endswith(suffix)]

    def texts(self) -> list[str]:
        """What each message the bot sent says now, after its edits, in order."""
        latest: dict[str, str] = {}
        for call in self.calls:
            if call.path.endswith("/messages") and call.method == "POST" and "_id" in call.body:
                latest[call.body["_id"]] = call.body.get("content", "")
            elif call.method == "PATCH" and "_id" in call.body:
                latest[call.body["_id"]] = call.body.get("content", "")
        return list(latest.values())

    async def wait_sent(self, count: int = 1, within: float = 10.0) -> None:
        await self.wait(lambda: len(self.sent()) >= count, within)

    # --- slash commands ------------------------------------------------------------------
    def registered(self) -> list[list[dict[str, Any]]]:
        """Each list of global commands the application registered (PUT), in order (a
        refused one is not)."""
        path = f"/applications/{APP_ID}/commands"
        return [
            c.body["commands"]
            for c in self.calls
            if c.method == "PUT" and c.path == path and "commands" in c.body
        ]

    async def wait_registered(self, within: float = 10.0) -> list[dict[str, Any]]:
        """The global commands, once the application has registered them."""
        await self.wait(lambda: bool(self.registered()), within)
        return self.registered()[-1]

    def callbacks(self, interaction: dict[str, Any]) -> list[dict[str, Any]]:
        """How the bot responded to ``interaction`` (the callback bodies, in order)."""
        path = f"/interactions/{interaction['id']}/{interaction['token']}/callback"
        return [c.body for c in self.calls if c.path == path]

    def answers(self, interaction: dict[str, Any]) -> list[str]:
        """What the bot answered to ``interaction``, now: the original response (once it
        replaced the deferred one), then each follow-up, after their edits."""
        hook = f"/webhooks/{APP_ID}/{interaction['token']}"
        latest: dict[str, str] = {}
        for call in self.calls:
            if call.path == hook + "/messages/@original" and call.method == "DELETE":
                latest.pop("@original", None)
            elif call.path == hook and call.method == "POST" and "_id" in call.body:
                latest[call.body["_id"]] = call.body.get("content", "")
            elif call.path.startswith(hook + "/messages/") and call.method == "PATCH":
                latest[call.path.rsplit("/", 1)[1]] = call.body.get("content", "")
        original = [latest.pop("@original")] if "@original" in latest else []
        return original + list(latest.values())

    def deleted_original(self, interaction: dict[str, Any]) -> bool:
        path = f"/webhooks/{APP_ID}/{interaction['token']}/messages/@original"
        return any(c.method == "DELETE" and c.path == path for c in self.calls)

    # --- the server ----------------------------------------------------------------------
    def _history(self, channel: str, query: Any) -> list[dict[str, Any]]:
        """As Discord answers ``after``: the oldest ``limit`` messages after it, newest first."""
        after = int(query.get("after", 0))
        limit = int(query.get("limit", 50))
        kept = sorted(
            (m for m in self.history.get(channel, []) if int(m["id"]) > after),
            key=lambda m: int(m["id"]),
        )
        return list(reversed(kept[:limit]))

    async def _send(self, socket: web.WebSocketResponse, event: str, data: Any) -> None:
        frame = {"op": 0, "t": event, "s": next(self._seq), "d": data}
        await socket.send_str(json.dumps(frame))

    async def _gateway(self, request: web.Request) -> web.WebSocketResponse:
        socket = web.WebSocketResponse()
        await socket.prepare(request)
        await socket.send_str(json.dumps({"op": 10, "d": {"heartbeat_interval": 41250}}))
        async for frame in socket:
            if frame.type != WSMsgType.TEXT:
                continue
            payload = json.loads(frame.data)
            op = payload.get("op")
            if op == 1:
                await socket.send_str(json.dumps({"op": 11}))
            elif op == 2:
                self.identifies.append(payload["d"])
                self._sockets.append(socket)
                shard = payload["d"].get("shard")
                ready = {
                    "v": 10,
                    "user": BOT_USER,
                    "session_id": f"session-{len(self.identifies)}",
                    "resume_gateway_url": self.gateway,
                    "guilds": [{"id": GUILD, "unavailable": True}],
                    "application": {"id": APP_ID, "flags": 0},
                    **({"shard": shard} if shard else {}),
                }
                await self._send(socket, "READY", ready)
                await self._send(socket, "GUILD_CREATE", guild_create())
                await self._notify()
            elif op == 6:
                self.resumes += 1
                self._sockets.append(socket)
                await self._send(socket, "RESUMED", {})
                await self._notify()
        if socket in self._sockets:
            self._sockets.remove(socket)
            await self._notify()
        return socket

    async def _rest(self, request: web.Request) -> web.Response:
        path = "/" + request.match_info["path"]
        by_token = path.startswith(("/interactions/", "/webhooks/"))  # no bot token there
        if not by_token and request.headers.get("Authorization") != f"Bot {self.token}":
            return _json({"message": "401: Unauthorized", "code": 0}, 401)
        body: Any = {}
        if request.can_read_body:
            if request.content_type == "multipart/form-data":
                form = await request.post()
                body = json.loads(str(form.get("payload_json", "{}")))
            else:
                body = await request.json()
        if isinstance(body, list):  # a bulk overwrite of commands
            body = {"commands": body}
        call = Call(request.method, path, body)
        if by_token or path.startswith("/applications/"):
            self.calls.append(call)
            response = self._interaction_rest(call)
            await self._notify()
            return response
        if path == "/users/@me":
            return _json(BOT_USER)
        if path == "/oauth2/applications/@me":
            return _json(
                {
                    "id": APP_ID,
                    "name": "Sol",
                    "icon": None,
                    "description": "",
                    "bot_public": True,
                    "bot_require_code_grant": False,
                    "owner": user(1),
                    "verify_key": "0" * 64,
                    "flags": 0,
                }
            )
        if path == "/users/@me/channels":  # open a DM with a user
            self.calls.append(call)
            recipient = user(1) if body.get("recipient_id") == user(1)["id"] else user(2)
            return _json(
                {"id": DM_CHANNEL, "type": 1, "recipients": [recipient], "last_message_id": None}
            )
        if path == "/gateway/bot":
            limits = {"total": 1000, "remaining": 999, "reset_after": 0, "max_concurrency": 1}
            return _json({"url": self.gateway, "shards": 1, "session_start_limit": limits})
        self.calls.append(call)
        await self._notify()
        if request.method == "GET" and path.endswith("/messages"):  # a channel's history
            return _json(self._history(path.split("/")[2], request.query))
        if request.method == "GET" and path == f"/channels/{DM_CHANNEL}":
            return _json({"id": DM_CHANNEL, "type": 1, "recipients": [user(1)]})
        if path.endswith("/typing") or "/reactions/" in path:
            return web.Response(status=204)
        if path.endswith("/messages") or request.method == "PATCH":
            if self.rate_limit_next:
                self.rate_limit_next -= 1
                call.body = {"rate_limited": True}
                return _json(
                    {"message": "You are being rate limited.", "retry_after": 0.3, "global": False},
                    429,
                    headers={
                        "Retry-After": "0.3",
                        "Via": "1.1 google",
                        "X-RateLimit-Scope": "user",
                    },
                )
            if len(body.get("content") or "") > 2000:
                call.body = {"refused": True}
                errors = {"content": {"_errors": [{"code": "BASE_TYPE_MAX_LENGTH"}]}}
                return _json({"message": "Invalid Form Body", "code": 50035, "errors": errors}, 400)
            channel = path.split("/")[2]
            message_id = path.split("/")[4] if request.method == "PATCH" else self.snowflake()
            body["_id"] = message_id
            sent = self.message(
                body.get("content", ""),
                author=BOT_USER,
                channel=channel,
                guild=channel != DM_CHANNEL,
            )
            sent["id"] = message_id
            if "message_reference" in body:
                sent["type"] = 19
                sent["message_reference"] = body["message_reference"]
            return _json(sent)
        return _json({})

    def _interaction_rest(self, call: Call) -> web.Response:
        """Commands, interaction callbacks and the interaction webhook."""
        parts = call.path.split("/")
        if call.method == "PUT" and call.path == f"/applications/{APP_ID}/commands":
            if self.refuse_commands:
                call.body = {"refused": True}
                errors = {
                    "0": {"name": {"_errors": [{"code": "APPLICATION_COMMAND_INVALID_NAME"}]}}
                }
                return _json({"message": "Invalid Form Body", "code": 50035, "errors": errors}, 400)
            commands = call.body["commands"]
            return _json(
                [
                    {"id": self.snowflake(), "application_id": APP_ID, "version": "1"} | c
                    for c in commands
                ]
            )
        if parts[1] == "interactions" and parts[-1] == "callback":
            kind = call.body.get("type")
            flags = (call.body.get("data") or {}).get("flags", 0)
            return _json(
                {
                    "interaction": {
                        "id": parts[2],
                        "type": AUTOCOMPLETE if kind == 8 else APPLICATION_COMMAND,
                        "response_message_loading": kind == 5,
                        "response_message_ephemeral": bool(flags & 64),
                    }
                }
            )
        if parts[1] == "webhooks" and parts[2] == APP_ID:
            if call.method == "DELETE":
                return web.Response(status=204)
            if len(call.body.get("content") or "") > 2000:
                call.body = {"refused": True}
                too_long = {"content": {"_errors": [{"code": "BASE_TYPE_MAX_LENGTH"}]}}
                return _json(
                    {"message": "Invalid Form Body", "code": 50035, "errors": too_long}, 400
                )
            if call.method == "POST" and len(parts) == 4:  # a follow-up
                message_id = self.snowflake()
                call.body["_id"] = message_id
            elif call.method == "PATCH" and len(parts) == 6:  # an edit
                message_id = parts[5] if parts[5] != "@original" else self.snowflake()
            else:
                return _json({"message": "404: Not Found", "code": 0}, 404)
            sent = self.message(call.body.get("content", ""), author=BOT_USER, guild=False)
            sent |= {"id": message_id, "webhook_id": APP_ID, "application_id": APP_ID}
            sent["flags"] = call.body.get("flags", 0)
            return _json(sent)
        return _json({"message": "404: Not Found", "code": 0}, 404)


def _option_type(value: Any) -> int:
    """Discord's option type for a value a user gave."""
    if isinstance(value, bool):
        return 5
    if isinstance(value, int):
        return 4
    return 10 if isinstance(value, float) else 3


def _json(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    # discord.py reads JSON only when the content type is exactly application/json.
    return web.Response(
        status=status,
        body=json.dumps(data).encode(),
        headers={"Content-Type": "application/json", **(headers or {})},
    )
