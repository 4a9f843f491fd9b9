"""Privacy primitives: scopes, pseudonymous ids, encryption at rest, redaction.

A :class:`Scope` says what may be recalled in a place, and turns that rule into
the ``WHERE`` clause of every query that reads remembered data. The rules:

- in a DM with user U: what U said anywhere on that platform (their DMs and
  their own messages in groups), and nothing anyone else said in private;
- in a group channel C: what was said in C by anyone (they all saw it), and
  nothing from any DM, not even the speaker's own.

Stored rows carry ``platform, workspace, channel, thread, private, user_key``;
``user_key`` is a keyed hash of the platform's user id (never the id itself),
and a DM's channel id is hashed the same way (on Telegram it *is* the user id).
"""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from core.errors import ConfigError
from core.types import Message, Place

if TYPE_CHECKING:
    from core.settings import Settings

# --- pseudonymous ids ---------------------------------------------------------


class Pseudonymizer:
    """Keyed hashes (HMAC-SHA256) of user ids: stable, not reversible without the key."""

    def __init__(self, key: bytes) -> None:
        if len(key) < 16:
            raise ConfigError("invalid setting SOCIALBOT_PSEUDONYM_KEY: use at least 16 bytes")
        self._key = key
        # every turn asks for its speaker's and its place's hash, often more than once
        self._hash = functools.lru_cache(maxsize=65536)(self._digest)

    def __call__(self, platform: str, native_id: str) -> str:
        return self._hash(platform, native_id)

    def _digest(self, platform: str, native_id: str) -> str:
        digest = hmac.new(self._key, f"{platform}\x1f{native_id}".encode(), hashlib.sha256)
        return digest.hexdigest()[:32]

    @classmethod
    def from_setting(cls, value: str, data_dir: Path) -> Pseudonymizer:
        """The configured key, or one made on first start and kept in the data folder."""
        if value:
            return cls(value.encode())
        path = data_dir / "pseudonym.key"
        if not path.exists():
            data_dir.mkdir(parents=True, exist_ok=True)
            path.touch(mode=0o600)
            path.write_text(secrets.token_hex(32))
        return cls(path.read_text().strip().encode())


# --- encryption at rest ---------------------------------------------------------


class Cipher:
    """Encrypts stored text with Fernet (AES-128-CBC + HMAC) when a key is set."""

    PREFIX = "enc1:"

    def __init__(self, key: str = "") -> None:
        self._fernet = None
        if key:
            from cryptography.fernet import Fernet

            try:
                self._fernet = Fernet(key.encode())
            except ValueError:
                raise ConfigError(
                    "invalid setting SOCIALBOT_ENCRYPTION_KEY: must be 32 url-safe base64-encoded "
                    "bytes (make one with `socialbot keygen`)"
                ) from None

    @property
    def enabled(self) -> bool:
        return self._fernet is not None

    def seal(self, text: str) -> str:
        if self._fernet is None:
            return text
        return self.PREFIX + self._fernet.encrypt(text.encode()).decode()

    def open(self, stored: str) -> str:
        if not stored.startswith(self.PREFIX):
            return stored  # written before encryption was turned on
        if self._fernet is None:
            raise ConfigError(
                "the database holds encrypted text but SOCIALBOT_ENCRYPTION_KEY is not set"
            )
        from cryptography.fernet import InvalidToken

        try:
            return self._fernet.decrypt(stored[len(self.PREFIX) :].encode()).decode()
        except InvalidToken:
            raise ConfigError("SOCIALBOT_ENCRYPTION_KEY does not match the stored data") from None

    @staticmethod
    def new_key() -> str:
        return base64.urlsafe_b64encode(secrets.token_bytes(32)).decode()


# --- redaction ------------------------------------------------------------------

_EMAIL = re.compile(r"\b[\w.+-]+@[\w-]+(?:\.[\w-]+)+\b")
_CARD = re.compile(r"\b(?:\d[ -]?){12,18}\d\b")
_DATE = re.compile(r"\d{4}[-/.]\d{1,2}[-/.]\d{1,2}|\d{1,2}[-/.]\d{1,2}[-/.]\d{2,4}")
_PHONE = re.compile(r"(?<![\w+])\+?\d[\d ()./-]{6,18}\d\b")


def _luhn(digits: str) -> bool:
    total = 0
    for i, char in enumerate(reversed(digits)):
        n = int(char)
        if i % 2:
            n = n * 2 - 9 if n > 4 else n * 2
        total += n
    return total % 10 == 0


def redact(text: str) -> str:
    """Replace e-mail addresses, card numbers and phone numbers with placeholders."""
    text = _EMAIL.sub("[email]", text)

    def card(match: re.Match[str]) -> str:
        digits = re.sub(r"\D", "", match.group())
        return "[card number]" if 13 <= len(digits) <= 19 and _luhn(digits) else match.group()

    text = _CARD.sub(card, text)

    def phone(match: re.Match[str]) -> str:
        if _DATE.fullmatch(match.group()):
            return match.group()
        digits = re.sub(r"\D", "", match.group())
        return "[phone number]" if 7 <= len(digits) <= 15 else match.group()

    return _PHONE.sub(phone, text)


# --- scopes ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Scope:
    """What may be recalled in one place. Build it with :meth:`for_place`."""

    platform: str
    private: bool
    user_key: str = ""
    """For a DM: whose memories."""
    workspace: str = ""
    channel: str = ""
    """For a group: which channel (all its threads)."""

    def where(self, table: str = "") -> tuple[str, tuple[object, ...]]:
        """The SQL condition (and its parameters) that selects exactly this scope's rows."""
        t = f"{table}." if table else ""
        if self.private:
            return f"({t}platform = ? AND {t}user_key = ?)", (self.platform, self.user_key)
        return (
            f"({t}platform = ? AND {t}workspace = ? AND {t}channel = ? AND {t}private = 0)",
            (self.platform, self.workspace, self.channel),
        )

    def admits(
        self, platform: str, workspace: str, channel: str, private: bool, user_key: str
    ) -> bool:
        """The same rule as :meth:`where`, for a row already in memory."""
        if platform != self.platform:
            return False
        if self.private:
            return user_key == self.user_key
        return not private and workspace == self.workspace and channel == self.channel

    def canonical(self) -> Scope:
        """The same scope with the fields its rule ignores left empty (equal rules, equal
        scopes: a key for per-scope caches)."""
        if self.private:
            return Scope(self.platform, True, user_key=self.user_key)
        return Scope(self.platform, False, workspace=self.workspace, channel=self.channel)

    @staticmethod
    def readers(
        platform: str, workspace: str, channel: str, private: bool, user_key: str
    ) -> tuple[Scope, ...]:
        """Every canonical scope that admits such a row: its speaker's DMs, and for a
        group message its channel (index upkeep without asking every scope)."""
        own = Scope(platform, True, user_key=user_key)
        if private:
            return (own,)
        return own, Scope(platform, False, workspace=workspace, channel=channel)


@dataclass(frozen=True, slots=True)
class StoredPlace:
    """A place as it is written to the database (DM channels hashed)."""

    platform: str
    workspace: str
    channel: str
    thread: str
    private: bool
    person: str = ""
    """In a group kept per person: whose conversation (a keyed hash, like user_key)."""


class Privacy:
    """The privacy settings of one running bot, applied by storage and the pipeline."""

    def __init__(
        self,
        pseudonymize: Pseudonymizer,
        cipher: Cipher,
        *,
        redact_stored: bool = True,
        redact_remote: bool = True,
    ) -> None:
        self.pseudonymize = pseudonymize
        self.cipher = cipher
        self.redact_stored = redact_stored
        self.redact_remote = redact_remote

    @classmethod
    def from_settings(cls, settings: Settings) -> Privacy:
        """As the settings say: the pseudonym key (made and kept in the data folder when
        not set), the encryption key, and what is redacted."""
        return cls(
            Pseudonymizer.from_setting(
                settings.pseudonym_key.get_secret_value(), settings.data_dir
            ),
            Cipher(settings.encryption_key.get_secret_value()),
            redact_stored=settings.redact_stored,
            redact_remote=settings.redact_remote,
        )

    def user_key(self, platform: str, user_id: str) -> str:
        return self.pseudonymize(platform, user_id)

    def place(self, place: Place) -> StoredPlace:
        channel = (
            self.pseudonymize(place.platform, "dm\x1f" + place.channel)
            if place.is_private
            else place.channel
        )
        person = self.pseudonymize(place.platform, place.person) if place.person else ""
        return StoredPlace(
            place.platform, place.workspace, channel, place.thread, place.is_private, person
        )

    def scope(self, message: Message) -> Scope:
        """The scope of recall for a message: decided by where it was said and by whom."""
        place = message.place
        if place.is_private:
            return Scope(
                place.platform,
                True,
                user_key=self.user_key(place.platform, message.speaker.user_id),
            )
        return Scope(place.platform, False, workspace=place.workspace, channel=place.channel)

    def for_storage(self, text: str) -> str:
        return redact(text) if self.redact_stored else text
