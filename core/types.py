"""Value types that flow through the core.

Adapters build these from native platform events; the core never looks at the
native objects (the ``raw`` fields exist only so an adapter can find its own
object again when it replies).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any


class PlaceKind(enum.StrEnum):
    """Whether a place is private to one person (a DM) or shared (a group channel)."""

    DM = "dm"
    GROUP = "group"


@dataclass(frozen=True, slots=True)
class Speaker:
    """Who spoke: a user id is only unique within its platform."""

    platform: str
    user_id: str
    display_name: str = ""
    is_bot: bool = False


@dataclass(frozen=True, slots=True)
class Place:
    """Where something was said.

    ``workspace`` is the Discord guild, Slack team or empty; ``thread`` is the
    thread or forum topic inside ``channel``, or empty. ``person`` is set only in a
    group whose profile keeps a conversation per person (``[groups] context =
    "person"``): whose conversation with the bot this is, their user id. Replies go
    to the channel and thread all the same.
    """

    platform: str
    channel: str
    kind: PlaceKind
    workspace: str = ""
    thread: str = ""
    person: str = ""

    @property
    def is_private(self) -> bool:
        return self.kind is PlaceKind.DM

    @property
    def conversation(self) -> ConversationKey:
        return ConversationKey(
            self.platform, self.workspace, self.channel, self.thread, self.person
        )


@dataclass(frozen=True, slots=True, order=True)
class ConversationKey:
    """One conversation: the unit whose turns are handled strictly in order."""

    platform: str
    workspace: str
    channel: str
    thread: str
    person: str = ""

    def __str__(self) -> str:
        parts = [self.platform, self.workspace or "-", self.channel]
        if self.thread:
            parts.append(self.thread)
        # whose conversation, without the user id (logs carry no user ids)
        return "/".join(parts) + (" (one person's)" if self.person else "")


@dataclass(frozen=True, slots=True)
class Attachment:
    name: str
    content_type: str = ""
    size: int = 0
    url: str = ""


def _now() -> datetime:
    return datetime.now(UTC)


def valid_text(text: str) -> str:
    """``text`` with what no encoder can write replaced by U+FFFD: lone surrogates
    (``"\\ud800"``), which browsers and some clients send and which UTF-8 (the database,
    the tokenizers) refuses. A well-formed pair of surrogates becomes its character."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")
    return text


@dataclass(frozen=True, slots=True)
class Message:
    """An incoming message from a person (or another bot) on some platform."""

    speaker: Speaker
    place: Place
    text: str
    id: str = ""
    time: datetime = field(default_factory=_now)
    mentions_bot: bool = False
    """The message mentions the bot or replies to one of its messages (adapters set it)."""
    reply_to: str = ""
    reply_to_user: str = ""
    """Who wrote the message replied to, where the platform says (for /block by reply);
    empty when it is the bot's own message."""
    attachments: tuple[Attachment, ...] = ()
    raw: Any = field(default=None, compare=False, repr=False)

    def valid(self) -> Message:
        """This message with its text and the speaker's name made valid Unicode
        (:func:`valid_text`); itself when they already are."""
        text, name = valid_text(self.text), valid_text(self.speaker.display_name)
        if text is self.text and name is self.speaker.display_name:
            return self
        speaker = replace(self.speaker, display_name=name)
        return replace(self, text=text, speaker=speaker)


@dataclass(frozen=True, slots=True)
class Reply:
    """What the bot says back, and where; ``in_reply_to`` is the native message id."""

    text: str
    place: Place
    in_reply_to: str = ""
    failed: bool = False
    """True when the text is an apology for an error rather than a real answer."""
    reaction: str = ""
    """An emoji to react to the user's message with, where the platform has reactions."""


class Role(enum.StrEnum):
    SYSTEM = "system"
    USER = "user"
    ASSISTANT = "assistant"


@dataclass(frozen=True, slots=True)
class ChatMessage:
    """One message of the chat sent to a language model."""

    role: Role
    content: str

    def as_dict(self) -> dict[str, str]:
        return {"role": self.role.value, "content": self.content}
