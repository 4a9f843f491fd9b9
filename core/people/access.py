"""Who the bot answers: the operator's allow and block lists, and admins' blocks.

The lists come from the settings (``SOCIALBOT_ALLOW_USERS``, ``SOCIALBOT_BLOCK_USERS``,
``SOCIALBOT_ALLOW_PLACES``, ``SOCIALBOT_BLOCK_PLACES``, ``SOCIALBOT_ALLOW_DMS``); admins
add and lift blocks while the bot runs (``/block``, ``/unblock``, ``/access``), kept in
the database by the person's keyed hash, like everything else about them.

The guard stage asks :meth:`Access.refusal` before anything of the message is read or
stored. Admins always pass, and the data-rights commands (those of the command table
with :attr:`~core.commands.Permission.DATA_RIGHT`) are answered for everyone: being
blocked does not take away anyone's right to see, export or erase what the bot keeps
about them. Who is an admin is decided here too (``SOCIALBOT_ADMINS``).
"""

from __future__ import annotations

import logging
import re
import time
from dataclasses import dataclass

from core.commands import Caller, CommandTable, Permission, Rest, command
from core.settings import Settings, id_pairs
from core.storage.store import Store
from core.types import Message, Place, Speaker

log = logging.getLogger(__name__)

_RIGHTS = "/privacy, /export and /forget still work for you."
NOT_ALLOWED = f"I only talk with people this bot's operator has allowed. {_RIGHTS}"
NO_DMS = f"I don't answer direct messages here; talk to me in a channel we share. {_RIGHTS}"
_MENTION = re.compile(r"^<@!?([A-Za-z0-9]+)(?:\|[^>]*)?>$")  # Discord <@1>, <@!1>; Slack <@U1|x>
_USER_ID = re.compile(r"^[A-Za-z0-9_-]+$")


@dataclass(frozen=True, slots=True)
class Refusal:
    reason: str
    """For the log."""
    notice: str | None = None
    """What the person is told (only in a DM, and never that they are blocked)."""


class Access:
    """The allow and block lists, checked on every message (no database read)."""

    def __init__(self, settings: Settings, store: Store) -> None:
        self.store = store
        self.allow_users = id_pairs(settings.allow_users)
        self.block_users = id_pairs(settings.block_users)
        self.allow_places = id_pairs(settings.allow_places)
        self.block_places = id_pairs(settings.block_places)
        self.allow_dms = settings.allow_dms
        self._admins = settings.admin_ids()
        self._blocked: set[tuple[str, str]] = set()
        """(platform, user key) of the people blocked with /block."""

    def register(self, table: CommandTable) -> None:
        """Add /block, /unblock and /access (admins only) to the command table."""
        for func, help_ in (
            (self._block, "stop answering someone and keeping what they say (admin)"),
            (self._unblock, "lift a /block (admin)"),
            (self._access, "who I answer: the allow and block lists (admin)"),
        ):
            table.add(
                command(
                    func,
                    name=func.__name__.lstrip("_"),
                    help=help_,
                    permission=Permission.ADMIN,
                    owner="core",
                )
            )

    def is_admin(self, speaker: Speaker) -> bool:
        """Whether ``speaker`` may run admin commands (the terminal's user always may)."""
        return self.is_admin_id(speaker.platform, speaker.user_id)

    def is_admin_id(self, platform: str, user_id: str) -> bool:
        return platform == "console" or (platform, user_id) in self._admins

    async def load(self) -> None:
        rows = await self.store.rows("SELECT platform, user_key FROM blocks")
        self._blocked = {(row[0], row[1]) for row in rows}

    def is_blocked(self, platform: str, user_key: str) -> bool:
        """Blocked with /block."""
        return (platform, user_key) in self._blocked

    def blocks(self, speaker: Speaker, user_key: str) -> bool:
        """Blocked in the settings or with /block."""
        return _listed(self.block_users, speaker.platform, speaker.user_id) or self.is_blocked(
            speaker.platform, user_key
        )

    def refusal(self, message: Message, user_key: str, *, admin: bool) -> Refusal | None:
        """Why ``message`` must not be answered, or None when it may be."""
        if admin:
            return None
        speaker, place = message.speaker, message.place
        if self.blocks(speaker, user_key):
            return Refusal("the speaker is blocked")
        dm = place.is_private
        if self.allow_users and not _listed(self.allow_users, speaker.platform, speaker.user_id):
            return Refusal("the speaker is not on the allow list", NOT_ALLOWED if dm else None)
        if dm:
            return None if self.allow_dms else Refusal("direct messages are off", NO_DMS)
        if self._matches(place, self.block_places):
            return Refusal("this place is blocked")
        if self.allow_places and not self._matches(place, self.allow_places):
            return Refusal("this place is not on the allow list")
        return None

    @staticmethod
    def _matches(place: Place, pairs: frozenset[tuple[str, str]]) -> bool:
        ids = (place.channel, place.thread, place.workspace)
        return any(_listed(pairs, place.platform, id_) for id_ in ids if id_)

    # --- admins' commands ------------------------------------------------------------------
    async def _access(self, ctx: Caller) -> str:
        return self.describe()

    async def _block(self, ctx: Caller, who: Rest | None = None) -> str:
        return await self._change(ctx.message, "block", who or "")

    async def _unblock(self, ctx: Caller, who: Rest | None = None) -> str:
        return await self._change(ctx.message, "unblock", who or "")

    async def _change(self, message: Message, name: str, args: str) -> str:
        """/block or /unblock WHO (or by reply to their message), for an admin."""
        platform = message.place.platform
        replied = message.reply_to_user
        try:
            target = (
                (platform, replied) if replied and not args.strip() else _target(args, platform)
            )
        except ValueError as error:
            return (
                f"{error}. Usage: /{name} WHO (a mention, a user id, or platform:user_id), "
                f"or reply to their message with /{name}"
            )
        key = self.store.privacy.user_key(*target)
        shown = f"{target[0]}:{target[1]}"
        if name == "block":
            if self.is_admin_id(*target):
                return f"{shown} is an admin of this bot; admins cannot be blocked."
            if _listed(self.block_users, *target) or self.is_blocked(target[0], key):
                return f"{shown} is already blocked."
            async with self.store.transaction() as db:
                await db.execute(
                    "INSERT OR IGNORE INTO blocks (platform, user_key, created_at)"
                    " VALUES (?, ?, ?)",
                    (target[0], key, time.time()),
                )
            self._blocked.add((target[0], key))
            log.info("an admin blocked a %s user", target[0])
            return (
                f"Blocked {shown}: I won't answer them or keep anything they say. "
                f"/unblock {shown} to undo."
            )
        if _listed(self.block_users, *target):
            return f"{shown} is blocked in the settings (SOCIALBOT_BLOCK_USERS); lift it there."
        if not self.is_blocked(target[0], key):
            return f"{shown} is not blocked."
        async with self.store.transaction() as db:
            await db.execute(
                "DELETE FROM blocks WHERE platform = ? AND user_key = ?", (target[0], key)
            )
        self._blocked.discard((target[0], key))
        log.info("an admin unblocked a %s user", target[0])
        return f"Unblocked {shown}."

    def describe(self) -> str:
        def people(pairs: frozenset[tuple[str, str]]) -> str:
            return f"{len(pairs)} {'person' if len(pairs) == 1 else 'people'}"

        def places(pairs: frozenset[tuple[str, str]]) -> str:
            return f"{len(pairs)} {'place' if len(pairs) == 1 else 'places'}"

        return "\n".join(
            [
                "Who I answer:",
                "- People: "
                + (
                    f"only those on the allow list ({people(self.allow_users)})"
                    if self.allow_users
                    else "everyone"
                )
                + f"; blocked: {people(self.block_users)} in the settings, "
                f"{len(self._blocked)} with /block.",
                "- Group places: "
                + (
                    f"only those on the allow list ({places(self.allow_places)})"
                    if self.allow_places
                    else "all"
                )
                + f"; blocked: {places(self.block_places)}.",
                f"- Direct messages: {'on' if self.allow_dms else 'off'}.",
                "Admins always pass; /privacy, /export and /forget work for everyone.",
                "/block WHO and /unblock WHO (WHO: a mention, a user id, or platform:user_id),"
                " or reply to someone's message with /block.",
            ]
        )


def _listed(pairs: frozenset[tuple[str, str]], platform: str, id_: str) -> bool:
    """``platform:id`` is in the list, or ``platform:*`` (everyone or everywhere there)."""
    return (platform, id_) in pairs or (platform, "*") in pairs


def _target(args: str, platform: str) -> tuple[str, str]:
    """Whom ``/block ARGS`` names: (platform, user id)."""
    text = args.strip()
    if not text or len(text.split()) > 1:
        raise ValueError("Name one person")
    mention = _MENTION.match(text)
    if mention:
        return platform, mention.group(1)
    named, colon, id_ = text.partition(":")
    if colon and named and _USER_ID.match(id_):
        return named.lower(), id_
    if text.startswith("@"):
        raise ValueError(f"I can't look up {text} by name; use a mention or their numeric user id")
    if _USER_ID.match(text):
        return platform, text
    raise ValueError(f"{text!r} is not a mention or a user id")
