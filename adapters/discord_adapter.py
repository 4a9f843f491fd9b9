"""Discord, with discord.py: the gateway, direct messages, guild channels and threads.

The bot answers every direct message, and in guild channels and threads as the
profile's ``[groups]`` says (by default when mentioned or replied to). Its answer
is a reply to the user's message, without pinging them. The client never pings
@everyone, roles or users from generated text. ``DISCORD_SHARDED=true`` runs an
``AutoShardedClient`` for bots in many servers.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re

import aiohttp
import discord
import yarl
from discord.gateway import DiscordWebSocket

from adapters.base import BotCore, EditingChannel, PlatformAdapter, split_text
from core.errors import ConfigError
from core.settings import Settings
from core.types import Attachment, Message, Place, PlaceKind, Speaker

log = logging.getLogger(__name__)

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


def to_message(native: discord.Message, me: discord.abc.User) -> Message | None:
    """A core message from a discord.py message, or None when it is not something said."""
    if native.type not in _SAYING or native.author.id == me.id:
        return None
    author = native.author
    channel = native.channel
    if native.guild is None or isinstance(channel, discord.DMChannel):
        place = Place(PLATFORM, str(channel.id), PlaceKind.DM)
    elif isinstance(channel, discord.Thread):
        place = Place(
            PLATFORM,
            str(channel.parent_id),
            PlaceKind.GROUP,
            workspace=str(native.guild.id),
            thread=str(channel.id),
        )
    else:
        place = Place(PLATFORM, str(channel.id), PlaceKind.GROUP, workspace=str(native.guild.id))
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
        self._connection: asyncio.Task[None] | None = None

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
        ready = asyncio.create_task(self.client.wait_until_ready())
        done, _ = await asyncio.wait(
            {self._connection, ready}, timeout=wait_ready, return_when=asyncio.FIRST_COMPLETED
        )
        ready.cancel()
        if self._connection in done:
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

    async def close(self) -> None:
        await self.client.close()
        if self._connection is not None:
            with contextlib.suppress(Exception, asyncio.CancelledError):
                await self._connection
