"""Discord, with discord.py: the gateway, direct messages, guild channels and threads.

The bot answers every direct message, and in guild channels and threads as the
profile's ``[groups]`` says (by default when mentioned or replied to). Its answer
is a reply to the user's message, without pinging them. The client never pings
@everyone, roles or users from generated text. ``DISCORD_SHARDED=true`` runs an
``AutoShardedClient`` for bots in many servers.

Slash commands: once connected, the adapter registers one global application command
per entry of the bot's command table (:func:`application_commands`: typed options,
choices, autocompletion; admin commands hidden except for server administrators). A
slash command is deferred at once and run as the same command typed as a message; its
answer edits the deferred response (private to the asker in a server), longer answers
go on in follow-ups. Commands typed as messages keep working.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import shlex
from typing import Any

import aiohttp
import discord
import yarl
from discord.gateway import DiscordWebSocket

from adapters.base import BotCore, EditingChannel, PlatformAdapter, RecentIds, split_text
from core.commands import Command, CommandTable, Param, Permission
from core.errors import ConfigError
from core.settings import Settings
from core.types import Attachment, Message, Place, PlaceKind, Speaker

log = logging.getLogger(__name__)

CATCH_UP_PLACES = 200
"""At most this many places (the most recently active) are read on reconnecting..."""
CATCH_UP_MESSAGES = 50
"""...and at most this many messages in each."""

PLATFORM = "discord"
LIMIT = 2000
TOKEN = re.compile(r"[\w-]{20,}\.[\w-]{4,}\.[\w-]{20,}")
_SAYING = {discord.MessageType.default, discord.MessageType.reply}


def intents() -> discord.Intents:
    """What the bot asks the gateway for: guild and direct messages and their text.

    ``message_content`` is privileged: turn it on in the Developer Portal (Bot page).
    """
    wanted = discord.Intents.none()
    wanted.guilds = True
    wanted.guild_messages = True
    wanted.dm_messages = True
    wanted.message_content = True
    return wanted


def place_of(channel: Any, guild_id: int | None) -> Place:
    """Where a message or interaction in ``channel`` was said: a DM, a guild channel, or
    a thread (its parent channel and the thread); the workspace is the guild."""
    if guild_id is None or isinstance(channel, discord.DMChannel):
        return Place(PLATFORM, str(channel.id), PlaceKind.DM)
    if isinstance(channel, discord.Thread):
        return Place(
            PLATFORM,
            str(channel.parent_id),
            PlaceKind.GROUP,
            workspace=str(guild_id),
            thread=str(channel.id),
        )
    return Place(PLATFORM, str(channel.id), PlaceKind.GROUP, workspace=str(guild_id))


def to_message(native: discord.Message, me: discord.abc.User) -> Message | None:
    """A core message from a discord.py message, or None when it is not something said."""
    if native.type not in _SAYING or native.author.id == me.id:
        return None
    author = native.author
    place = place_of(native.channel, native.guild.id if native.guild is not None else None)
    mentioned = any(user.id == me.id for user in native.mentions)
    # People often pick the bot's own role from the mention list instead of the bot.
    own_role = native.guild.self_role if native.guild is not None else None
    if own_role is not None and own_role in native.role_mentions:
        mentioned = True
        text = native.content.replace(own_role.mention, "")
    else:
        text = native.content
    reference = native.reference
    replied_to = ""
    if reference is not None and isinstance(reference.resolved, discord.Message):
        if reference.resolved.author.id == me.id:
            mentioned = True
        else:  # whom an admin's /block by reply means; never the bot itself
            replied_to = str(reference.resolved.author.id)
    text = re.sub(rf"<@!?{me.id}>\s?", "", text).strip()
    return Message(
        Speaker(
            PLATFORM,
            str(author.id),
            author.display_name,
            is_bot=author.bot or native.webhook_id is not None,
        ),
        place,
        text,
        id=str(native.id),
        time=native.created_at,
        mentions_bot=mentioned,
        reply_to=str(reference.message_id) if reference and reference.message_id else "",
        reply_to_user=replied_to,
        attachments=tuple(
            Attachment(a.filename, a.content_type or "", a.size, a.url) for a in native.attachments
        ),
        raw=native,
    )


class DiscordChannel(EditingChannel[discord.Message]):
    limit = LIMIT
    edit_every = 1.2  # Discord allows about five edits in five seconds per channel
    typing_every = 8.0  # the indicator lasts ten seconds

    def __init__(self, native: discord.Message) -> None:
        super().__init__()
        self.native = native

    async def show_typing(self) -> None:
        await self.native.channel.typing()

    async def post(self, text: str, *, first: bool) -> discord.Message:
        if first:  # a reply to the user's message; sent plainly if it was deleted meanwhile
            reference = self.native.to_reference(fail_if_not_exists=False)
            return await self.native.channel.send(text, reference=reference)
        return await self.native.channel.send(text)

    async def edit(self, handle: discord.Message, text: str) -> None:
        await handle.edit(content=text)

    async def react(self, emoji: str) -> None:
        await self.native.add_reaction(emoji)

    async def whisper(self, text: str) -> None:
        """A direct message to the speaker (a reply in the channel if they do not take DMs)."""
        if isinstance(self.native.channel, discord.DMChannel):
            await super().whisper(text)
            return
        try:
            for part in split_text(text, self.limit):
                await self.native.author.send(part)
        except discord.Forbidden:
            await super().whisper(text)


# --- slash commands ----------------------------------------------------------------------
COMMAND_NAME = re.compile(r"^[-_a-z0-9]{1,32}$")
"""What Discord takes as a command's (and an option's) name."""
STRING, INTEGER, BOOLEAN, NUMBER = 3, 4, 5, 10
"""Discord's application command option types."""
MAX_COMMANDS = 100  # global CHAT_INPUT commands an application may have
MAX_OPTIONS = 25  # options of one command, choices of one option, autocompletion choices
TEXT_MAX = 100  # a description, a choice's name or string value


def _clip(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= TEXT_MAX else text[: TEXT_MAX - 1] + "…"


def _option_type(param: Param) -> int:
    values = param.choices or (param.kind,)
    if all(isinstance(v, bool) or v is bool for v in values):
        return BOOLEAN
    if all(type(v) is int or v is int for v in values):
        return INTEGER
    if all(type(v) in (int, float) or v in (int, float) for v in values):
        return NUMBER
    return STRING


def _option_description(param: Param) -> str:
    if param.choices:
        return _clip(f"{param.name}: " + " | ".join(str(c) for c in param.choices))
    hint = {int: "a whole number", float: "a number", bool: "yes or no"}.get(param.kind, "")
    if param.rest:
        hint = "the rest of the line"
    return _clip(f"{param.name} ({hint})" if hint else param.name)


def _option(table: CommandTable, command: Command, param: Param, required: bool) -> dict[str, Any]:
    kind = _option_type(param)
    option: dict[str, Any] = {
        "type": kind,
        "name": param.name,
        "description": _option_description(param),
        "required": required,
    }
    # Discord takes at most 25 choices of at most 100 characters, and none for BOOLEAN
    # (a bad one would refuse every command): beyond that the core checks the value.
    if (
        param.choices
        and kind != BOOLEAN
        and len(param.choices) <= MAX_OPTIONS
        and all(0 < len(str(c)) <= TEXT_MAX for c in param.choices)
    ):
        option["choices"] = [
            {"name": str(c), "value": str(c) if kind == STRING else c} for c in param.choices
        ]
    elif (
        kind == STRING
        and not param.choices
        and (command.suggest is not None or table.suggestions(command.name, param.name, ""))
    ):
        option["autocomplete"] = True
    return option


def application_commands(table: CommandTable) -> list[dict[str, Any]]:
    """Discord's global application commands for ``table``: one CHAT_INPUT command per
    command whose name Discord takes (others are left out, with a warning).

    - the description is the command's help, else its usage (at most 100 characters);
    - the options are its arguments, in order: text (and the rest of the line) a STRING,
      ``int`` an INTEGER, ``float`` a NUMBER, ``bool`` a BOOLEAN, a ``Literal`` with its
      choices; required as the handler says, unless an optional argument comes before a
      required one (Discord forbids that): then all are optional and the command's own
      usage message tells what is missing;
    - a text argument without choices autocompletes when the command offers suggestions
      (``Command.suggest``) or the table has values for it (an argument called
      ``command``: the command names);
    - admin commands are hidden except for server administrators
      (``default_member_permissions: "0"``; they may grant them to others); the bot's own
      admin check still applies to whoever runs them. All work in DMs too.
    """
    found: list[dict[str, Any]] = []
    for command in table:
        names = [command.name, *(p.name for p in command.params)]
        if not all(COMMAND_NAME.match(n) for n in names) or len(command.params) > MAX_OPTIONS:
            log.warning("discord: /%s cannot be a slash command; it works typed", command.name)
            continue
        if len(found) == MAX_COMMANDS:
            log.warning(
                "discord: more than %d commands; /%s and later are typed only",
                MAX_COMMANDS,
                command.name,
            )
            break
        flags = [p.required for p in command.params]
        in_order = flags == sorted(flags, reverse=True)  # required ones first
        admin_only = "0" if command.permission is Permission.ADMIN else None
        found.append(
            {
                "type": 1,  # CHAT_INPUT
                "name": command.name,
                "description": _clip(command.help or command.usage),
                "options": [
                    _option(table, command, p, p.required and in_order) for p in command.params
                ],
                "default_member_permissions": admin_only,
                "dm_permission": True,
            }
        )
    return found


def _quoted(text: str) -> str:
    """``text`` as one word of a command line."""
    try:
        if shlex.split(text) == [text]:
            return text
    except ValueError:  # an unbalanced quote
        pass
    return shlex.quote(text)


def _word(param: Param | None, value: Any) -> str:
    text = ("yes" if value else "no") if isinstance(value, bool) else str(value)
    return text if param is not None and param.rest else _quoted(text)


def command_text(table: CommandTable, name: str, options: list[dict[str, Any]]) -> str:
    """The command line a slash command stands for: ``/name`` and the option values in
    the command's argument order. An optional argument left out before one that was
    given is filled with its default, so that the later one keeps its place."""
    given = {str(o["name"]): o["value"] for o in options if "value" in o}
    command = table.get(name)
    if command is None:  # registered before the table changed: the core says so
        return " ".join([f"/{name}", *(_word(None, v) for v in given.values())])
    words = [f"/{name}"]
    skipped: list[Param] = []
    for param in command.params:
        if param.name not in given:
            skipped.append(param)
            continue
        for gap in skipped:
            missing = gap.required or gap.default is None
            words.append("''" if missing else _word(gap, gap.default))
        skipped = []
        words.append(_word(param, given[param.name]))
    return " ".join(words)


def interaction_message(interaction: discord.Interaction[Any], table: CommandTable) -> Message:
    """The core message a slash command stands for: what the user would have typed,
    addressed to the bot, with the interaction's id (a redelivery is answered once)."""
    data: Any = interaction.data
    channel = interaction.channel
    if not isinstance(data, dict) or channel is None:
        raise ValueError("an application command without data or channel")
    user = interaction.user
    options = [o for o in data.get("options") or [] if isinstance(o, dict)]
    return Message(
        Speaker(PLATFORM, str(user.id), user.display_name, is_bot=user.bot),
        place_of(channel, interaction.guild_id),
        command_text(table, str(data["name"]), options),
        id=str(interaction.id),
        time=interaction.created_at,
        mentions_bot=True,
        raw=interaction,
    )


Answer = discord.InteractionMessage | discord.WebhookMessage


class InteractionChannel(EditingChannel[Answer]):
    """Answers a slash command through its interaction, private to the asker in a server.

    Made as the command arrives, it defers the interaction at once (Discord wants an
    acknowledgement within three seconds, whatever the turns before it in the
    conversation): Discord shows "thinking" until the first message replaces that
    deferred response; further messages (a long answer's parts, another answer) are
    follow-ups. Streamed text edits the message shown, as on a channel.
    """

    limit = LIMIT
    edit_every = 1.2

    def __init__(self, interaction: discord.Interaction[Any], *, ephemeral: bool) -> None:
        super().__init__()
        self.interaction = interaction
        self.ephemeral = ephemeral
        self.answered = False
        """Whether the deferred response has been replaced by an answer."""
        self._deferred = asyncio.create_task(self._defer())

    async def _defer(self) -> None:
        await self.interaction.response.defer(ephemeral=self.ephemeral, thinking=True)

    async def show_typing(self) -> None:
        return  # the deferred response shows "thinking" until the answer replaces it

    async def post(self, text: str, *, first: bool) -> Answer:
        await self._deferred  # the answer cannot come before the acknowledgement
        if not self.answered:  # a whisper first too: every answer here is the asker's
            message = await self.interaction.edit_original_response(content=text)
            self.answered = True
            return message
        return await self.interaction.followup.send(text, ephemeral=self.ephemeral, wait=True)

    async def finish(self) -> None:
        """After the turn: remove the deferred response if nothing replaced it (someone
        the bot does not answer), rather than leave it "thinking" for 15 minutes."""
        try:
            await self._deferred
            if not self.answered:
                await self.interaction.delete_original_response()
        except discord.HTTPException as error:
            log.warning("discord: could not finish an interaction: %s", error)

    async def edit(self, handle: Answer, text: str) -> None:
        await handle.edit(content=text)


class DiscordAdapter(PlatformAdapter):
    platform = PLATFORM

    def __init__(self, settings: Settings, *, ready_timeout: float = 2.0) -> None:
        super().__init__(settings)
        self._token = settings.discord_bot_token.get_secret_value()
        if not TOKEN.fullmatch(self._token):
            raise ConfigError(
                "invalid setting DISCORD_BOT_TOKEN: it should be the bot token from the "
                "Developer Portal (Bot > Reset Token), three parts separated by dots"
            )
        # discord.py reads its endpoints from class attributes; point them where asked.
        discord.http.Route.BASE = settings.discord_api_base_url.rstrip("/")
        DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(settings.discord_gateway_url)
        # The bot has no voice; discord.py would warn that voice libraries are missing.
        discord.VoiceClient.warn_nacl = discord.VoiceClient.warn_dave = False
        kind = discord.AutoShardedClient if settings.discord_sharded else discord.Client
        self.client = kind(
            intents=intents(),
            allowed_mentions=discord.AllowedMentions.none(),
            guild_ready_timeout=ready_timeout,
        )
        self.client.on_message = self._on_message  # type: ignore[attr-defined]
        self.client.on_interaction = self._on_interaction  # type: ignore[attr-defined]
        self.client.on_ready = self._on_ready  # type: ignore[attr-defined]
        self._guard_interaction_parser()
        self._connection: asyncio.Task[None] | None = None
        self._registering: asyncio.Task[None] | None = None
        self._stale = False
        """The command table changed since the slash commands were last registered."""
        self._interactions = RecentIds()
        self.registered: list[str] = []
        """The slash commands registered with Discord (names), once done."""

    def _guard_interaction_parser(self) -> None:
        """An INTERACTION_CREATE that discord.py cannot read would end the gateway
        connection (the parser's error escapes its read loop): log and drop it instead."""
        parsers = self.client._connection.parsers
        parse = parsers["INTERACTION_CREATE"]

        def guarded(data: Any) -> None:
            try:
                parse(data)
            except Exception:
                log.warning(
                    "discord: an interaction could not be read; it is dropped", exc_info=True
                )
                self._spawn(self.received())  # it was an event all the same

        parsers["INTERACTION_CREATE"] = guarded

    async def login(self) -> None:
        try:
            await self.client.login(self._token)
        except discord.LoginFailure:
            raise ConfigError(
                "DISCORD_BOT_TOKEN was refused by Discord: reset it in the Developer Portal"
            ) from None
        except (aiohttp.ClientError, OSError, discord.HTTPException) as error:
            raise ConfigError(
                f"cannot reach Discord at DISCORD_API_BASE_URL "
                f"({self.settings.discord_api_base_url}): {type(error).__name__}"
            ) from None

    async def send_to(self, place: Place, text: str) -> None:
        """Say something unprompted (a reminder) in a channel, thread or DM."""
        target = int(place.thread or place.channel)
        channel = self.client.get_channel(target) or await self.client.fetch_channel(target)
        if not isinstance(channel, discord.abc.Messageable):
            raise ValueError(f"discord channel {target} cannot take messages")
        for part in split_text(text, LIMIT):
            await channel.send(part)

    async def start(self, bot: BotCore, *, wait_ready: float = 30.0) -> None:
        await super().start(bot)
        self._connection = asyncio.create_task(self.client.connect(reconnect=True))
        bot.commands.watch(self._commands_changed)
        self._commands_changed()
        ready = asyncio.create_task(self.client.wait_until_ready())
        done, _ = await asyncio.wait(
            {self._connection, ready}, timeout=wait_ready, return_when=asyncio.FIRST_COMPLETED
        )
        ready.cancel()
        if self._connection in done:
            if self._registering is not None:
                self._registering.cancel()
            error = self._connection.exception()
            if isinstance(error, discord.PrivilegedIntentsRequired):
                raise ConfigError(
                    "Discord refused the Message Content intent: turn it on in the Developer "
                    "Portal (your app > Bot > Privileged Gateway Intents)"
                )
            raise ConfigError(f"the Discord gateway connection ended: {error!r}")
        if not done:
            log.warning("discord: not ready after %g s; still connecting", wait_ready)
        else:
            log.info("discord: connected as %s", self.client.user)

    @property
    def connected(self) -> bool:
        """A gateway session is up (discord.py reconnects a dropped one by itself)."""
        return self.accepting and self.client.is_ready() and not self.client.is_closed()

    async def _on_ready(self) -> None:
        """A new gateway session (the first, or after a reconnect that could not resume,
        which replays nothing): catch up on what was missed meanwhile."""
        if self.bot is not None and self.settings.discord_catch_up_s > 0:
            self._spawn(self._catch_up(self.bot))

    async def _catch_up(self, bot: BotCore) -> None:
        """Discord keeps no queue for a bot that is away: read each recent place's history
        after the last message accepted there and hand over what the bot never had (what
        it had is recognised by the inbox and not answered twice)."""
        me = self.client.user
        if me is None:
            return
        read = 0
        places = await bot.last_seen(
            PLATFORM, within_s=self.settings.discord_catch_up_s, limit=CATCH_UP_PLACES
        )
        for channel_id, last_id in places:
            try:
                target = int(channel_id)
                channel = self.client.get_channel(target) or await self.client.fetch_channel(target)
                if not isinstance(channel, discord.abc.Messageable):
                    continue
                async for native in channel.history(
                    after=discord.Object(int(last_id)),
                    limit=CATCH_UP_MESSAGES,
                    oldest_first=True,
                ):
                    if native.author.id == me.id:
                        continue
                    read += 1
                    await self.deliver(to_message(native, me), DiscordChannel(native))
            except (discord.HTTPException, aiohttp.ClientError, OSError, ValueError) as error:
                log.warning("discord: could not catch up in a channel: %s", error)
        if read:
            log.info("discord: caught up on %d message(s) sent while away", read)

    async def _on_message(self, native: discord.Message) -> None:
        await self.received()
        me = self.client.user
        if me is None:
            return
        try:
            message = to_message(native, me)
        except Exception:
            log.exception("discord: could not read a message; it is dropped")
            return
        await self.deliver(message, DiscordChannel(native))

    async def registration_done(self) -> None:
        """Wait until the slash commands' registration has been tried (see
        :attr:`registered` for whether it succeeded)."""
        if self._registering is not None:
            await asyncio.shield(self._registering)

    def _commands_changed(self) -> None:
        """Register the slash commands again (once connected), after the changes so far."""
        self._stale = True
        if self._registering is None or self._registering.done():
            self._registering = asyncio.get_running_loop().create_task(self._register_when_ready())

    async def _register_when_ready(self) -> None:
        await self.client.wait_until_ready()
        while self._stale:  # changes made while registering are registered next
            self._stale = False
            await self.register_commands()

    async def register_commands(self) -> None:
        """Replace the application's global slash commands with the command table's
        (typed commands work whether or not this succeeds)."""
        if self.bot is None:
            return
        application = self.client.application_id
        if application is None:
            log.warning("discord: no application id from Discord; slash commands not registered")
            return
        payload = application_commands(self.bot.commands)
        try:
            await self.client.http.bulk_upsert_global_commands(application, payload)
        except (discord.HTTPException, aiohttp.ClientError, OSError) as error:
            log.warning(
                "discord: could not register the slash commands (%s); typed commands still work",
                error,
            )
            return
        self.registered = [c["name"] for c in payload]
        log.info("discord: %d slash commands registered", len(payload))

    async def _on_interaction(self, interaction: discord.Interaction[Any]) -> None:
        await self.received()
        try:
            if interaction.type is discord.InteractionType.application_command:
                await self._run_command(interaction)
            elif interaction.type is discord.InteractionType.autocomplete:
                await self._autocomplete(interaction)
        except Exception:
            log.warning("discord: could not handle an interaction; it is dropped", exc_info=True)

    async def _run_command(self, interaction: discord.Interaction[Any]) -> None:
        if self.bot is None or not self.accepting:
            return
        message = interaction_message(interaction, self.bot.commands)
        if not self._interactions.first_time(message.id):  # not acknowledged twice either
            log.info("discord: dropped an interaction delivered twice")
            return
        # No await before the turn is handed in (the channel defers beside it): the turn
        # is the bot's as soon as the event is counted, as for a message.
        channel = InteractionChannel(interaction, ephemeral=interaction.guild_id is not None)
        await self.deliver(message, channel, then=channel.finish)

    async def _autocomplete(self, interaction: discord.Interaction[Any]) -> None:
        if self.bot is None or not self.accepting:
            return
        data: Any = interaction.data
        focused = next((o for o in data.get("options") or [] if o.get("focused")), None)
        if focused is None:
            raise ValueError("an autocompletion without a focused option")
        typed = str(focused.get("value", ""))
        offered = self.bot.commands.suggestions(str(data["name"]), str(focused["name"]), typed)
        choices = [
            discord.app_commands.Choice(name=value, value=value)
            for value in offered
            if 0 < len(value) <= TEXT_MAX
        ]
        await interaction.response.autocomplete(choices[:MAX_OPTIONS])

    async def close(self) -> None:
        for task in (self._registering, *self._tasks):
            if task is not None:
                task.cancel()
        await self.client.close()
        if self._connection is not None:
            with contextlib.suppress(Exception, asyncio.CancelledError):
                await self._connection
