"""Slack, with slack-bolt (async): Socket Mode or the HTTP Events API.

Direct messages (``im``) are private places; channels, private channels and group
DMs are group places where the bot answers as the profile's ``[groups]`` says (by
default when mentioned). A message in a thread is answered in that thread. Slack
keeps messages that start with ``/`` for slash commands, so the bot's commands go
through one slash command (``/socialbot help``) and are answered privately.

In HTTP mode the Events API endpoint is this module's own handler in front of
slack-bolt's: the signature is checked first, on the raw bytes (401 when it is missing
or wrong), then a body that is not UTF-8 or not a JSON object (or form) gets 400, and
only a readable, signed body reaches bolt. Nothing anyone can send makes it answer 500
or log a traceback; an event that cannot be read is logged once, without its content,
and counted in :attr:`SlackAdapter.malformed`.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import html
import logging
import re
import time
from typing import Any

from aiohttp import web
from slack_bolt.adapter.aiohttp import to_aiohttp_response
from slack_bolt.adapter.socket_mode.async_handler import AsyncSocketModeHandler
from slack_bolt.async_app import AsyncApp
from slack_bolt.request.async_request import AsyncBoltRequest
from slack_bolt.response import BoltResponse
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.builtin_async_handlers import AsyncRateLimitErrorRetryHandler
from slack_sdk.web.async_client import AsyncWebClient

from adapters.base import (
    BotCore,
    EditingChannel,
    Knocks,
    Malformed,
    PlatformAdapter,
    bound_port,
    split_text,
    unreadable,
)
from core.errors import ConfigError
from core.settings import Settings
from core.types import Attachment, Message, Place, PlaceKind, Reply, Speaker

log = logging.getLogger(__name__)

PLATFORM = "slack"
LIMIT = 4000  # Slack truncates at 40,000 characters and asks for at most about 4,000
EVENTS_PATH = "/slack/events"
RATE_LIMIT_RETRIES = 5
MAX_BODY = 1 << 20  # bytes; Slack's events are far smaller
# Message subtypes that are a person (or bot) saying something; edits, deletions,
# joins and the like are not turns.
_SAYING = {None, "file_share", "thread_broadcast", "bot_message", "me_message"}
# Slack reacts with emoji names, not characters.
_EMOJI_NAMES = {
    "🎉": "tada",
    "🫂": "people_hugging",
    "🤗": "hugging_face",
    "😮": "open_mouth",
    "❤️": "heart",
    "👍": "+1",
    "😊": "blush",
}


class MalformedEvent(Malformed):
    """An event that lacks what a turn needs."""


def _check(event: object) -> None:
    """The fields a turn reads have the types Slack sends: else :class:`MalformedEvent`."""
    if not isinstance(event, dict):
        raise MalformedEvent("event")
    for name in ("user", "bot_id", "channel", "channel_type", "text", "ts", "thread_ts", "team"):
        if not isinstance(event.get(name), str | None):
            raise MalformedEvent(name)
    if not isinstance(event.get("user_profile"), dict | None):
        raise MalformedEvent("user_profile")
    files = event.get("files")
    if files is not None and not (
        isinstance(files, list) and all(isinstance(f, dict) for f in files)
    ):
        raise MalformedEvent("files")


def to_message(event: dict[str, Any], team_id: str, bot_user_id: str) -> Message | None:
    """A core message from a Slack ``message`` or ``app_mention`` event, or None;
    :class:`MalformedEvent` when it lacks what a turn needs."""
    _check(event)
    if event.get("subtype") not in _SAYING or event.get("hidden"):
        return None
    user = event.get("user") or event.get("bot_id")
    channel = event.get("channel")
    if not user or not channel or user == bot_user_id:
        return None
    channel_type = event.get("channel_type") or ("im" if channel.startswith("D") else "channel")
    text = str(event.get("text") or "")
    mention = f"<@{bot_user_id}>"
    mentioned = event.get("type") == "app_mention" or (bool(bot_user_id) and mention in text)
    text = html.unescape(re.sub(rf"{re.escape(mention)}\s?", "", text)).strip()
    profile = event.get("user_profile") or {}
    name = profile.get("display_name") or profile.get("real_name") or str(user)
    files = tuple(
        Attachment(f.get("name", "file"), f.get("mimetype", ""), int(f.get("size") or 0))
        for f in event.get("files") or ()
    )
    return Message(
        Speaker(PLATFORM, str(user), name, is_bot=bool(event.get("bot_id"))),
        Place(
            PLATFORM,
            channel,
            PlaceKind.DM if channel_type == "im" else PlaceKind.GROUP,
            workspace=team_id or str(event.get("team") or ""),
            thread=str(event.get("thread_ts") or ""),
        ),
        text,
        id=str(event.get("ts") or ""),
        mentions_bot=mentioned,
        attachments=files,
        raw=event,
    )


def signature_valid(secret: bytes, body: bytes, timestamp: str, signature: str) -> bool:
    """Slack's request signature: ``v0=`` and the HMAC-SHA256, keyed with the signing
    secret, of ``v0:{timestamp}:{body}``, over the body's raw bytes (slack_sdk's verifier
    decodes them first, so a body that is not UTF-8 could not be told from a forged one),
    made in the last five minutes."""
    if not secret or not timestamp.isdigit() or abs(time.time() - int(timestamp)) > 300:
        return False
    digest = hmac.new(secret, b"v0:" + timestamp.encode() + b":" + body, hashlib.sha256)
    return hmac.compare_digest(f"v0={digest.hexdigest()}", signature)


def _escape(text: str) -> str:
    """Slack reads &, < and > as markup; escape them so text shows as written."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


class SlackChannel(EditingChannel[str]):
    """Replies in the user's thread (or at top level); the handle is the message's ts.

    Slack has no typing indicator for bots: a placeholder message stands in for it
    and is then edited into the reply as it streams.
    """

    limit = LIMIT
    edit_every = 1.2  # chat.update allows about 50 calls a minute
    placeholder = "…"

    def __init__(self, client: AsyncWebClient, message: Message) -> None:
        super().__init__()
        self.client = client
        self.message = message
        self.channel = message.place.channel
        self.thread = message.place.thread or None

    async def typing(self) -> None:
        if self._handle is None:
            await self._keep_on_record(self.placeholder, posting=True)
            try:
                self._handle = await self.post(self.placeholder, first=True)
                self._shown = self.placeholder
            except SlackApiError as error:
                log.debug("slack: no placeholder: %s", error)
                return
            await self._keep_on_record(self.placeholder)

    async def show_typing(self) -> None:  # the placeholder is posted once, in typing()
        return

    async def post(self, text: str, *, first: bool) -> str:
        response = await self.client.chat_postMessage(
            channel=self.channel, text=_escape(text), thread_ts=self.thread
        )
        return str(response["ts"])

    async def edit(self, handle: str, text: str) -> None:
        await self.client.chat_update(channel=self.channel, ts=handle, text=_escape(text))

    def handle_from_id(self, message_id: str) -> str | None:
        return message_id or None  # a message's ts is all chat.update needs

    async def whisper(self, text: str) -> None:
        """An ephemeral message: only the speaker sees it."""
        if self.message.place.is_private:
            await super().whisper(text)
            return
        for part in split_text(text, self.limit):
            await self.client.chat_postEphemeral(
                channel=self.channel,
                user=self.message.speaker.user_id,
                text=_escape(part),
                thread_ts=self.thread,
            )

    async def react(self, emoji: str) -> None:
        name = _EMOJI_NAMES.get(emoji) or (emoji.strip(":") if emoji.startswith(":") else "")
        if name and self.message.id:
            await self.client.reactions_add(
                channel=self.channel, timestamp=self.message.id, name=name
            )


class CommandChannel(EditingChannel[None]):
    """Answers a slash command privately (an ephemeral message to the user)."""

    limit = LIMIT

    def __init__(self, respond: Any) -> None:
        super().__init__(stream=False)
        self.respond = respond

    async def show_typing(self) -> None:
        return

    async def post(self, text: str, *, first: bool) -> None:
        await self.respond(text=_escape(text), response_type="ephemeral")

    async def edit(self, handle: None, text: str) -> None:
        raise AssertionError("command answers are not streamed")

    async def send(self, reply: Reply) -> None:
        for part in split_text(reply.text, self.limit):
            await self.post(part, first=False)


class SlackAdapter(PlatformAdapter):
    platform = PLATFORM

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        token = settings.slack_bot_token.get_secret_value()
        app_token = settings.slack_app_token.get_secret_value()
        secret = settings.slack_signing_secret.get_secret_value()
        if not token.startswith("xoxb-"):
            raise ConfigError(
                "invalid setting SLACK_BOT_TOKEN: it should start with xoxb- (the Bot User "
                "OAuth Token from your app's OAuth & Permissions page)"
            )
        if app_token and not app_token.startswith("xapp-"):
            raise ConfigError(
                "invalid setting SLACK_APP_TOKEN: it should start with xapp- (an app-level "
                "token with connections:write, for Socket Mode)"
            )
        if not app_token and not secret:
            raise ConfigError(
                "Slack needs SLACK_APP_TOKEN (Socket Mode) or SLACK_SIGNING_SECRET (HTTP "
                "Events API) besides SLACK_BOT_TOKEN"
            )
        self.socket_mode = bool(app_token)
        self.client = AsyncWebClient(token=token, base_url=settings.slack_api_base_url)
        self.client.retry_handlers.append(
            AsyncRateLimitErrorRetryHandler(max_retry_count=RATE_LIMIT_RETRIES)
        )
        self.app = AsyncApp(
            client=self.client,
            signing_secret=secret or None,
            request_verification_enabled=not self.socket_mode,
            logger=logging.getLogger("slack_bolt"),
            # acknowledged once the listener returns: ours returns once the bot has the
            # message in its inbox, so an event Slack counts as delivered is never lost
            process_before_response=True,
        )
        self.app.event("message")(self._on_event)
        self.app.event("app_mention")(self._on_event)
        self.app.command(settings.slack_command)(self._on_command)
        self.app.error(self._on_bolt_error)
        self._app_token = app_token
        self._secret = secret.encode()
        self._unsigned = Knocks("slack request(s) refused without a valid signature")
        self._handler: AsyncSocketModeHandler | None = None
        self._runner: web.AppRunner | None = None
        self.http_port = 0
        self.bot_user_id = ""
        self.team_id = ""

    async def login(self) -> None:
        try:
            identity = await self.client.auth_test()
        except SlackApiError as error:
            raise ConfigError(
                f"SLACK_BOT_TOKEN was refused by Slack ({error.response.get('error')})"
            ) from None
        except OSError as error:
            raise ConfigError(
                f"cannot reach Slack at SLACK_API_BASE_URL ({self.settings.slack_api_base_url}):"
                f" {type(error).__name__}"
            ) from None
        self.bot_user_id = str(identity.get("user_id") or "")
        self.team_id = str(identity.get("team_id") or "")
        log.info("slack: logged in as %s in %s", identity.get("user"), identity.get("team"))

    async def send_to(self, place: Place, text: str) -> None:
        """Say something unprompted (a reminder) in a channel, thread or DM."""
        for part in split_text(text, LIMIT):
            await self.client.chat_postMessage(
                channel=place.channel, text=_escape(part), thread_ts=place.thread or None
            )

    async def start(self, bot: BotCore) -> None:
        await super().start(bot)
        if self.socket_mode:
            self._handler = AsyncSocketModeHandler(self.app, self._app_token)
            try:
                await self._handler.connect_async()
            except SlackApiError as error:
                raise ConfigError(
                    f"SLACK_APP_TOKEN was refused by Slack ({error.response.get('error')})"
                ) from None
            log.info("slack: connected in Socket Mode")
            return
        server = web.Application(client_max_size=MAX_BODY)
        server.router.add_post(EVENTS_PATH, self._on_http)
        self._runner = web.AppRunner(server, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(
            self._runner, self.settings.slack_http_host, self.settings.slack_http_port
        )
        await site.start()
        self.http_port = bound_port(site)
        log.info(
            "slack: Events API at http://%s:%d%s",
            self.settings.slack_http_host,
            self.http_port,
            EVENTS_PATH,
        )

    def answering(self, message: Message) -> SlackChannel:
        return SlackChannel(self.client, message)

    @property
    def connected(self) -> bool:
        """Socket Mode: the socket is open and not stale; HTTP mode: the server is up."""
        if not self.accepting:
            return False
        if self._handler is None:
            return self._runner is not None
        client = self._handler.client
        session = client.current_session
        return not client.closed and not client.stale and session is not None and not session.closed

    async def _on_http(self, request: web.Request) -> web.Response:
        """The Events API endpoint: signature first, then a readable body, then bolt."""
        body = await request.read()
        if not self._signed(body, request):
            return web.json_response({"error": "invalid request"}, status=401)
        try:
            bolt_request = AsyncBoltRequest(
                body=body.decode("utf-8"),
                query=request.query_string,
                headers=dict(request.headers),
            )
        except UnicodeDecodeError:
            return await self._refuse(body, "it is not UTF-8")
        except Exception as error:  # not JSON, too deep, a JSON list, ...
            return await self._refuse(body, f"bolt cannot read it ({type(error).__name__})")
        if not isinstance(bolt_request.body, dict):
            return await self._refuse(body, "it is not a JSON object or a form")
        response = await self.app.async_dispatch(bolt_request)
        return await to_aiohttp_response(response)

    def _signed(self, body: bytes, request: web.Request) -> bool:
        """Slack's signature of this body is valid and recent; a request without one is
        logged at most once a minute (anyone who can reach the port can send it)."""
        valid = signature_valid(
            self._secret,
            body,
            request.headers.get("X-Slack-Request-Timestamp", ""),
            request.headers.get("X-Slack-Signature", ""),
        )
        if not valid:
            self._unsigned.note(request.remote)
        return valid

    async def _refuse(self, body: bytes, why: str) -> web.Response:
        """A signed body that cannot be read: 400, logged and counted the first time."""
        await self.skipped(hashlib.sha256(body).hexdigest(), f"a request: {why}", count_event=True)
        return web.json_response({"error": "malformed request"}, status=400)

    async def _on_bolt_error(
        self, error: Exception, request: AsyncBoltRequest, response: BoltResponse | None
    ) -> BoltResponse | None:
        """bolt's own handling failed (a body of the wrong shape: an ``event`` that is a
        string, ...): one line and no traceback, and 400 rather than 500
        where the request is still to be answered."""
        key = hashlib.sha256(request.raw_body.encode("utf-8", "replace")).hexdigest()
        await self.skipped(
            key if request.raw_body else f"socket/{id(request)}",
            f"a request bolt cannot handle ({type(error).__name__})",
            count_event=True,  # bolt's middleware failed before any listener (ours never raise)
        )
        if response is None:  # already acknowledged
            return None
        return BoltResponse(status=400, body={"error": "malformed request"})

    async def _on_event(self, event: dict[str, Any], body: dict[str, Any]) -> None:
        await self.received()
        event_id = body.get("event_id") or ""
        if not self.seen.first_time(f"event/{event_id}" if event_id else ""):  # "": always new
            log.info("slack: dropped a redelivered event")
            return
        try:
            team = body.get("team_id")
            message = to_message(
                event, team if isinstance(team, str) and team else self.team_id, self.bot_user_id
            )
        except Exception as error:
            why = unreadable(error, "Slack")
            name = event_id if isinstance(event_id, str) and event_id.isalnum() else "?"
            await self.skipped(f"event/{event_id}", f"event {name[:40]}: {why}")
            return
        if message is not None:
            await self.deliver(message, self.answering(message))

    async def _on_command(self, ack: Any, command: dict[str, Any], respond: Any) -> None:
        await self.received()
        words = str(command.get("text") or "").strip() or "help"
        channel = str(command.get("channel_id") or "")
        private = channel.startswith("D") or command.get("channel_name") == "directmessage"
        message = Message(
            Speaker(PLATFORM, str(command.get("user_id")), str(command.get("user_name") or "")),
            Place(
                PLATFORM,
                channel,
                PlaceKind.DM if private else PlaceKind.GROUP,
                workspace=str(command.get("team_id") or self.team_id),
            ),
            "/" + words.lstrip("/"),
            id=str(command.get("trigger_id") or ""),
            mentions_bot=True,
            raw=command,
        )
        await self.deliver(message, CommandChannel(respond))
        await ack()  # after the bot has it (within Slack's 3 s: a database write)

    async def stop_intake(self) -> None:
        # Slack delivers what it could not hand over again later, or to another instance.
        if self._handler is not None:
            await self._handler.disconnect_async()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        await asyncio.sleep(0)  # events acknowledged just now reach the bot first
        await super().stop_intake()

    async def close(self) -> None:
        if self._handler is not None:
            await self._handler.close_async()
        if self._runner is not None:
            await self._runner.cleanup()
