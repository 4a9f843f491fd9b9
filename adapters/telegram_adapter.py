"""Telegram, with python-telegram-bot: long polling, or a webhook on the bot's own server.

Private chats are direct messages; groups, supergroups and their forum topics are
group places (a topic is the place's thread). In groups the bot answers as the
profile's ``[groups]`` says: by default when mentioned (``@botname``), replied to,
or given a command. With Telegram's privacy mode on (the default for bots) it only
receives those messages anyway; see the README.

Updates that cannot be read never stop the bot: python-telegram-bot parses each answer
to ``getUpdates`` as a whole, so one update it cannot parse would fail the whole batch,
leave the poller's offset before it and have it fetched again at once, for ever.
:class:`UpdatesRequest` screens each answer first (see there); the webhook answers such
a body with 400; a message that parses but lacks what a turn needs is skipped in
:meth:`TelegramAdapter._on_update`. Each is logged once, without its content, and
counted in :attr:`TelegramAdapter.malformed`.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import re
import secrets
import time
import warnings
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import Any, TypeGuard
from urllib.parse import urlsplit

from aiohttp import web
from telegram import Bot, BotCommand, ReplyParameters, Update, User
from telegram import Message as TgMessage
from telegram.constants import ChatAction, ChatType, MessageEntityType, ReactionEmoji
from telegram.error import BadRequest, InvalidToken, NetworkError, RetryAfter, TelegramError
from telegram.ext import Application, ApplicationBuilder, ContextTypes, TypeHandler
from telegram.request import HTTPXRequest, RequestData

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
from core.types import Attachment, Message, Place, PlaceKind, Speaker

log = logging.getLogger(__name__)

MENU_NAME = re.compile(r"^[a-z0-9_]{1,32}$")
"""What Telegram takes as a command's name in the menu."""

PLATFORM = "telegram"
LIMIT = 4096  # telegram.constants.MessageLimit.MAX_TEXT_LENGTH
TOKEN = re.compile(r"\d{3,12}:[A-Za-z0-9_-]{30,60}")
SEND_ATTEMPTS = 5
WEBHOOK_SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"
ALLOWED_UPDATES = ["message"]
DRAIN_S = 60.0
CONFIRM_WAIT_S = 600.0
# Telegram only accepts its own set of reaction emoji; near ones stand in for the rest.
_REACTIONS = {e.value for e in ReactionEmoji}
_REACTION_STAND_INS = {"🫂": "🤗", "😮": "🤯", "😊": "🥰"}
MAX_UPDATE_ID = 2**63 - 1  # the Bot API's ids are 64-bit at most
_KIND = re.compile(r"[a-z_]{1,40}")

JSONDict = dict[str, Any]


class MalformedMessage(Malformed):
    """A message that parsed but lacks what a turn needs."""


def _is_int(value: object) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)


def usable_update_id(value: object) -> TypeGuard[int]:
    """An update id that can be confirmed: an int the Bot API's offset can go past."""
    return _is_int(value) and 0 <= value <= MAX_UPDATE_ID


def update_kinds(data: object) -> str:
    """What an update carries ("message", "callback_query", ...), for the log."""
    if not isinstance(data, dict):
        return f"not an object: {type(data).__name__}"
    kinds = [k if isinstance(k, str) and _KIND.fullmatch(k) else "?" for k in data]
    return ", ".join(k for k in kinds if k != "update_id") or "nothing"


def read_update(data: object, bot: Bot | None) -> tuple[Update | None, str]:
    """An update parsed from its JSON, or None and why not (the why names no content)."""
    if not isinstance(data, dict):
        return None, f"it is not a JSON object ({type(data).__name__})"
    if not usable_update_id(data.get("update_id")):
        return None, "it has no usable update_id"
    try:
        update = Update.de_json(data, bot)
    except Exception as error:  # anything: a bad field can fail PTB in many ways
        return None, f"python-telegram-bot cannot parse it ({type(error).__name__})"
    if update.message is not None:
        try:
            _check(update.message)
        except MalformedMessage as error:
            return None, f"its message's {error.args[0]} is not what the Bot API sends"
    return update, ""


def _check(native: TgMessage) -> None:
    """The fields a turn reads have the types the Bot API promises (PTB does not check
    them): else :class:`MalformedMessage` naming the field."""
    chat, user = native.chat, native.from_user
    if not _is_int(native.message_id):
        raise MalformedMessage("message_id")
    if not isinstance(native.date, datetime):
        raise MalformedMessage("date")
    if chat is None or not _is_int(chat.id) or not isinstance(chat.type, str):
        raise MalformedMessage("chat")
    if user is not None and not (
        _is_int(user.id)
        and isinstance(user.first_name, str)
        and isinstance(user.last_name, str | None)
    ):
        raise MalformedMessage("from")
    for name in ("text", "caption"):
        if not isinstance(getattr(native, name), str | None):
            raise MalformedMessage(name)
    if native.message_thread_id is not None and not _is_int(native.message_thread_id):
        raise MalformedMessage("message_thread_id")
    for name in ("entities", "caption_entities"):
        for entity in getattr(native, name):
            if not (_is_int(entity.offset) and _is_int(entity.length)):
                raise MalformedMessage(name)


def to_message(native: TgMessage, me: User) -> Message | None:
    """A core message from a Telegram message, or None when it is not for the bot;
    :class:`MalformedMessage` when it lacks what a turn needs."""
    _check(native)
    user = native.from_user
    if user is None or native.chat.type == ChatType.CHANNEL:
        return None  # channel posts and anonymous senders have no person to answer
    text = native.text or native.caption or ""
    entities = native.parse_entities() if native.text else native.parse_caption_entities()
    mentioned = False
    username = (me.username or "").lower()
    for entity, value in entities.items():
        if entity.type == MessageEntityType.MENTION and value[1:].lower() == username:
            mentioned = True
        elif entity.type == MessageEntityType.TEXT_MENTION and entity.user is not None:
            mentioned |= entity.user.id == me.id
        elif entity.type == MessageEntityType.BOT_COMMAND and entity.offset == 0 and "@" in value:
            if value.split("@", 1)[1].lower() != username:
                return None  # a command for another bot
            mentioned = True
    replied = native.reply_to_message
    if replied is not None and replied.forum_topic_created is not None:
        replied = None  # in a forum topic, every message "replies" to the topic's start
    if replied is not None and replied.from_user is not None:
        mentioned |= replied.from_user.id == me.id
    if me.username:
        text = re.sub(rf"(?<!\w)@{re.escape(me.username)}\b", "", text, flags=re.I).strip()
    private = native.chat.type == ChatType.PRIVATE
    place = Place(
        PLATFORM,
        str(native.chat.id),
        PlaceKind.DM if private else PlaceKind.GROUP,
        thread=str(native.message_thread_id) if native.is_topic_message else "",
    )
    attachments: list[Attachment] = []
    if native.document is not None:
        doc = native.document
        attachments.append(
            Attachment(doc.file_name or "file", doc.mime_type or "", doc.file_size or 0)
        )
    if native.photo:
        attachments.append(Attachment("photo.jpg", "image/jpeg", native.photo[-1].file_size or 0))
    return Message(
        Speaker(PLATFORM, str(user.id), user.full_name, bool(user.is_bot)),
        place,
        text,
        id=str(native.message_id),
        time=native.date,
        mentions_bot=mentioned,
        reply_to=str(replied.message_id) if replied is not None else "",
        reply_to_user=(  # whom an admin's /block by reply means; never the bot itself
            str(replied.from_user.id)
            if replied is not None
            and replied.from_user is not None
            and replied.from_user.id != me.id
            else ""
        ),
        attachments=tuple(attachments),
        raw=native,
    )


async def _call(what: str, call: Any) -> Any:
    """Run a Bot API call, waiting out rate limits and brief network failures."""
    for attempt in range(1, SEND_ATTEMPTS + 1):
        try:
            return await call()
        except RetryAfter as error:
            with warnings.catch_warnings():  # an int now, a timedelta in a later PTB
                warnings.simplefilter("ignore")
                wait = error.retry_after
            seconds = wait.total_seconds() if isinstance(wait, timedelta) else float(wait)
            log.warning("telegram: rate limited while %s; retrying in %.1f s", what, seconds)
            await asyncio.sleep(seconds)
        except NetworkError as error:  # TimedOut included; BadRequest is not retried
            if isinstance(error, BadRequest) or attempt == SEND_ATTEMPTS:
                raise
            log.warning("telegram: %s failed (%s); retrying", what, error)
            await asyncio.sleep(min(2.0**attempt, 30.0))
    raise RuntimeError(f"telegram: gave up {what} after {SEND_ATTEMPTS} rate limits")


class UpdatesRequest(HTTPXRequest):
    """The connection ``getUpdates`` goes through (``ApplicationBuilder.get_updates_request``):
    it screens each answer before python-telegram-bot parses it.

    PTB's ``Bot.get_updates`` parses the answer's updates all at once, and its ``Updater``
    then confirms them by asking for the next offset (the last id + 1). One update it
    cannot parse fails that whole call, so the offset never moves past it and it is fetched
    again at once, for ever. Here each update of the answer is tried on its own first
    (``screen``): one that cannot be parsed is replaced by an empty update with its id, which
    PTB parses, hands to the application (no handler reads it) and confirms like any other;
    one without a usable id is left out. An answer that is not a list of updates at all
    (not JSON, no ``result``) becomes a :class:`~telegram.error.NetworkError`, which the
    poller retries after a growing pause (1 s, up to 30 s) rather than at once.

    Only public PTB API is used: the builder's ``get_updates_request`` and
    ``BaseRequest.do_request``, the method a request class implements.

    Every call to ``getUpdates`` confirms the updates fetched before it. It is made only
    once those have been accepted by the bot (``confirmable``: written to its inbox, or
    skipped), so that an update Telegram forgets is never one the bot could still lose.
    """

    def __init__(
        self,
        screen: Callable[[list[Any]], Awaitable[list[JSONDict]]],
        confirmable: Callable[[], Awaitable[None]],
    ) -> None:
        super().__init__(connection_pool_size=1)  # what ApplicationBuilder gives getUpdates
        self.screen = screen
        self.confirmable = confirmable
        self.answered_at: float | None = None
        """When getUpdates last answered (``time.monotonic()``)."""

    async def do_request(
        self,
        url: str,
        method: str,
        request_data: RequestData | None = None,
        *args: Any,
        **kwargs: Any,
    ) -> tuple[int, bytes]:
        if url.endswith("/getUpdates"):
            await self.confirmable()
        code, payload = await super().do_request(url, method, request_data, *args, **kwargs)
        if code != 200 or not url.endswith("/getUpdates"):
            return code, payload  # errors are PTB's to read (a 429's retry_after, ...)
        self.answered_at = time.monotonic()
        try:
            answer = json.loads(payload.decode("utf-8", "replace"))
        except (ValueError, RecursionError):
            answer = None
        if not isinstance(answer, dict) or not isinstance(answer.get("result"), list):
            # PTB would log the whole answer (people's messages) and ask again at once
            raise NetworkError("the answer to getUpdates is not a list of updates")
        answer["result"] = await self.screen(answer["result"])
        return code, json.dumps(answer).encode()


class TelegramChannel(EditingChannel[int]):
    """Answers one message: as a reply to it (quoted in groups), in its forum topic. It is
    built from the core message's ids alone (:meth:`answering`), so that after a restart
    the same answer can be made, and a reply shown half way edited by its message id."""

    limit = LIMIT
    typing_every = 4.5  # the indicator lasts five seconds

    def __init__(
        self,
        bot: Bot,
        chat_id: int,
        message_id: int,
        *,
        private: bool,
        thread: int | None = None,
        user_id: int | None = None,
    ) -> None:
        super().__init__()
        self.bot, self.chat_id, self.message_id = bot, chat_id, message_id
        self.private, self.thread, self.user_id = private, thread, user_id
        # Telegram allows about one message a second in a chat and twenty a minute in a
        # group; streamed edits stay well within both.
        self.edit_every = 1.0 if private else 3.0

    @classmethod
    def answering(cls, bot: Bot, message: Message) -> TelegramChannel:
        """For ``message``, live or accepted before a restart (:mod:`core.storage.inbox`)."""
        place = message.place
        return cls(
            bot,
            int(place.channel),
            int(message.id or 0),
            private=place.is_private,
            thread=int(place.thread) if place.thread else None,
            user_id=int(message.speaker.user_id),
        )

    async def show_typing(self) -> None:
        await self.bot.send_chat_action(
            self.chat_id, ChatAction.TYPING, message_thread_id=self.thread
        )

    async def post(self, text: str, *, first: bool) -> int:
        quote = None
        if first and not self.private and self.message_id:
            quote = ReplyParameters(self.message_id, allow_sending_without_reply=True)
        sent: TgMessage = await _call(
            "replying" if first else "sending",
            lambda: self.bot.send_message(
                self.chat_id, text, message_thread_id=self.thread, reply_parameters=quote
            ),
        )
        return sent.message_id

    async def edit(self, handle: int, text: str) -> None:
        try:
            await _call(
                "editing",
                lambda: self.bot.edit_message_text(text, chat_id=self.chat_id, message_id=handle),
            )
        except BadRequest as error:
            if "not modified" not in str(error).lower():
                raise

    def handle_from_id(self, message_id: str) -> int | None:
        return int(message_id) if message_id.isdigit() else None

    async def react(self, emoji: str) -> None:
        emoji = _REACTION_STAND_INS.get(emoji, emoji)
        if emoji in _REACTIONS and self.message_id:
            await self.bot.set_message_reaction(self.chat_id, self.message_id, emoji)

    async def whisper(self, text: str) -> None:
        """A private message to the speaker; Telegram only allows it once they have started
        a chat with the bot, else the notice is a reply in the group."""
        if self.private or self.user_id is None:
            await super().whisper(text)
            return
        user = self.user_id
        try:
            for part in split_text(text, self.limit):
                await _call("whispering", lambda p=part: self.bot.send_message(user, p))
        except TelegramError:
            await super().whisper(text)


class TelegramAdapter(PlatformAdapter):
    platform = PLATFORM

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        token = settings.telegram_bot_token.get_secret_value()
        if not TOKEN.fullmatch(token):
            raise ConfigError(
                "invalid setting TELEGRAM_BOT_TOKEN: it should look like 123456789:AAE... "
                "(the token @BotFather gave you)"
            )
        base = settings.telegram_api_base_url.rstrip("/")
        self._updates = UpdatesRequest(self._screen, self._confirmable)
        self.app: Application[Any, Any, Any, Any, Any, Any] = (
            ApplicationBuilder()
            .token(token)
            .base_url(f"{base}/bot")
            .base_file_url(f"{base}/file/bot")
            .get_updates_request(self._updates)
            .concurrent_updates(True)  # the core keeps each conversation in order
            .build()
        )
        self.app.add_handler(TypeHandler(Update, self._on_update))  # every update is counted
        self.app.add_error_handler(self._on_error)
        self.webhook_secret = (
            settings.telegram_webhook_secret.get_secret_value() or secrets.token_urlsafe(32)
        )
        self._runner: web.AppRunner | None = None
        self.webhook_port = 0
        self._wrong_secrets = Knocks("telegram webhook call(s) with a wrong secret")
        self._unconfirmed: set[int] = set()
        """Updates fetched by polling and not yet accepted by the bot (or skipped)."""
        self._handed_over = asyncio.Condition()
        self._polling_since: float | None = None

    poll_timeout_s = 10.0
    """How long one getUpdates long poll waits for an update (the poller's heartbeat)."""

    @property
    def connected(self) -> bool:
        """Taking updates in: the webhook's server is up, or the poller has had an answer
        from getUpdates within :attr:`quiet_limit_s` (one and a half long polls)."""
        if not self.accepting:
            return False
        if self.settings.telegram_webhook_url:
            return self._runner is not None
        signs = [t for t in (self._updates.answered_at, self._polling_since) if t is not None]
        limit = self.quiet_limit_s or 0.0
        return bool(signs) and time.monotonic() - max(signs) < limit

    @property
    def quiet_limit_s(self) -> float | None:
        # a long poll answers within its length (plus the network's time): half as long
        # again without an answer is a stall, noticed within twice the heartbeat
        return None if self.settings.telegram_webhook_url else 1.5 * self.poll_timeout_s

    async def restart(self) -> None:
        """Poll afresh: the poller may be stuck on a connection that never answers (a
        proxy or network that drops packets without closing), or have stopped."""
        updater = self.app.updater
        if updater is None or not self.accepting:
            return
        if updater.running:
            await updater.stop()
        await self._poll()

    @property
    def me(self) -> User:
        me: User = self.app.bot.bot
        return me

    async def login(self) -> None:
        try:
            await self.app.initialize()  # getMe: checks the token
        except InvalidToken:
            raise ConfigError(
                "TELEGRAM_BOT_TOKEN was refused by Telegram: check it with @BotFather"
            ) from None
        except TelegramError as error:
            raise ConfigError(
                f"cannot reach Telegram at TELEGRAM_API_BASE_URL "
                f"({self.settings.telegram_api_base_url}): {type(error).__name__}"
            ) from None
        log.info("telegram: logged in as @%s", self.me.username)

    async def send_to(self, place: Place, text: str) -> None:
        """Say something unprompted (a reminder) in a chat or forum topic."""
        thread = int(place.thread) if place.thread else None
        for part in split_text(text, LIMIT):
            await _call(
                "sending",
                lambda p=part: self.app.bot.send_message(
                    int(place.channel), p, message_thread_id=thread
                ),
            )

    async def start(self, bot: BotCore) -> None:
        await super().start(bot)
        await self.app.start()
        await self._set_menu()
        bot.commands.watch(self._menu_changed)
        if self.settings.telegram_webhook_url:
            await self._start_webhook()
        else:
            await self._poll()
            log.info("telegram: long polling")

    async def _poll(self) -> None:
        assert self.app.updater is not None
        self._polling_since = time.monotonic()
        await self.app.updater.start_polling(
            timeout=timedelta(seconds=self.poll_timeout_s),
            allowed_updates=ALLOWED_UPDATES,
            error_callback=self._on_polling_error,
        )

    async def _set_menu(self) -> None:
        """The command menu in Telegram's apps, from the command table (the commands
        everyone may use whose names Telegram takes); nice to have."""
        if self.bot is None:
            return
        try:
            await self.app.bot.set_my_commands(
                [
                    BotCommand(c.name, (c.help or c.usage)[:256])
                    for c in self.bot.commands.visible(admin=False)
                    if MENU_NAME.match(c.name)
                ]
            )
        except TelegramError as error:
            log.warning("telegram: could not set the command menu: %s", error)

    def _menu_changed(self) -> None:
        """A plugin was enabled or disabled: the menu follows."""
        self._spawn(self._set_menu())

    async def _start_webhook(self) -> None:
        url = self.settings.telegram_webhook_url
        server = web.Application(client_max_size=1 << 20)
        server.router.add_post(urlsplit(url).path or "/", self._on_webhook)
        self._runner = web.AppRunner(server, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(
            self._runner, self.settings.telegram_webhook_host, self.settings.telegram_webhook_port
        )
        await site.start()
        self.webhook_port = bound_port(site)
        await _call(
            "setting the webhook",
            lambda: self.app.bot.set_webhook(
                url, allowed_updates=ALLOWED_UPDATES, secret_token=self.webhook_secret
            ),
        )
        log.info("telegram: webhook at %s (listening on port %d)", url, self.webhook_port)

    async def _on_webhook(self, request: web.Request) -> web.Response:
        given = request.headers.get(WEBHOOK_SECRET_HEADER, "")
        if not hmac.compare_digest(given.encode(), self.webhook_secret.encode()):
            self._wrong_secrets.note(request.remote)
            return web.Response(status=403)
        if not self.accepting:
            return web.Response(status=503)  # Telegram delivers it again later
        body = await request.read()
        data: object = None
        try:
            data = json.loads(body.decode("utf-8"))
        except UnicodeDecodeError:
            update, why = None, "it is not UTF-8"
        except (ValueError, RecursionError):
            update, why = None, "it is not JSON"
        else:
            update, why = read_update(data, self.app.bot)
        if update is None:
            update_id = data.get("update_id") if isinstance(data, dict) else None
            if usable_update_id(update_id):
                key, what = f"update/{update_id}", f"update {update_id} ({update_kinds(data)})"
            else:
                key, what = hashlib.sha256(body).hexdigest(), "a webhook body"
            await self.skipped(key, f"{what}: {why}", count_event=True)
            return web.Response(status=400, text="not an update\n")
        # Answered 200 once the bot has accepted the message (in its inbox): a process
        # killed before that gets it again from Telegram.
        await self._on_update(update, None)
        return web.Response()

    async def _screen(self, updates: list[Any]) -> list[JSONDict]:
        """What :class:`UpdatesRequest` hands PTB of one answer to getUpdates: each update
        PTB can parse, an empty update with the same id for one it cannot (so that it is
        confirmed), none for one without a usable id."""
        screened: list[JSONDict] = []
        for data in updates:
            update, why = read_update(data, self.app.bot)
            if update is not None:
                screened.append(data)
                self._unconfirmed.add(update.update_id)
                continue
            update_id = data.get("update_id") if isinstance(data, dict) else None
            if usable_update_id(update_id):
                what = f"update {update_id} ({update_kinds(data)}): {why}"
                await self.skipped(f"update/{update_id}", what)
                screened.append({"update_id": update_id})  # counted when PTB hands it over
                self._unconfirmed.add(update_id)
            else:
                try:
                    key = hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()
                except (TypeError, ValueError, RecursionError):
                    key = "unreadable"
                what = f"an update ({update_kinds(data)}): {why}"
                await self.skipped(key, what, count_event=True)
        if updates and not screened:  # the poller would ask again at once: it pauses
            raise NetworkError("no update in the answer to getUpdates can be confirmed")
        return screened

    async def _on_update(self, update: object, context: ContextTypes.DEFAULT_TYPE | None) -> None:
        await self.received()
        if not isinstance(update, Update):
            return
        try:
            await self._take(update)
        finally:
            await self._accepted(update.update_id)

    async def _take(self, update: Update) -> None:
        if update.message is None:
            return
        try:
            message = to_message(update.message, self.me)
        except Exception as error:  # what PTB parsed is not what a turn needs
            what = f"update {update.update_id} (message): {unreadable(error, 'the Bot API')}"
            await self.skipped(f"update/{update.update_id}", what)
            return
        if message is not None:
            await self.deliver(message, self.answering(message))

    async def _accepted(self, update_id: int) -> None:
        async with self._handed_over:
            self._unconfirmed.discard(update_id)
            self._handed_over.notify_all()

    async def _confirmable(self) -> None:
        """Wait until every update fetched so far has been accepted or skipped: the next
        ``getUpdates`` confirms them to Telegram. Past ``CONFIRM_WAIT_S`` (the bot's
        database has been failing that long) they are confirmed anyway, with a warning,
        rather than hold up every later message for ever."""
        if not self._unconfirmed:
            return
        async with self._handed_over:
            try:
                await asyncio.wait_for(
                    self._handed_over.wait_for(lambda: not self._unconfirmed), CONFIRM_WAIT_S
                )
            except TimeoutError:
                log.warning(
                    "telegram: %d update(s) not accepted after %g s; confirming them anyway",
                    len(self._unconfirmed),
                    CONFIRM_WAIT_S,
                )
                self._unconfirmed.clear()

    def answering(self, message: Message) -> TelegramChannel:
        return TelegramChannel.answering(self.app.bot, message)

    async def _on_error(self, update: object, context: ContextTypes.DEFAULT_TYPE) -> None:
        log.error("telegram: error handling an update", exc_info=context.error)

    def _on_polling_error(self, error: TelegramError) -> None:
        log.warning("telegram: polling failed (%s); retrying", error)

    async def stop_intake(self) -> None:
        """Stop fetching updates; those already fetched (Telegram counts them as delivered)
        are still answered."""
        if self.app.updater is not None and self.app.updater.running:
            await self.app.updater.stop()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        try:
            await asyncio.wait_for(self.app.update_queue.join(), DRAIN_S)
        except TimeoutError:
            log.warning("telegram: updates still in progress after %g s", DRAIN_S)
        await super().stop_intake()

    async def close(self) -> None:
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._runner is not None:
            await self._runner.cleanup()
        if self.app.running:
            await self.app.stop()
        await self.app.shutdown()
