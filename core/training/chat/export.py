"""``socialbot export training``: the bot's stored conversations as fine-tuning data,
from the people who agreed to it and from no one else.

Who is in: the query itself selects only turns whose speaker (for a reply: the person
it answered) has a ``training`` consent and is not opted out; nobody else's words are
read at all. Someone who never ran ``/consent training``, withdrew it, opted out, or
ran ``/forget`` contributes nothing.

What comes out: one JSON line per conversation session in the chat fine-tuning format
(``{"messages": [...]}``, the profile's persona as the system message), with e-mail
addresses, phone and card numbers, @-mentions and links replaced by placeholders,
and no platform ids: each conversation and speaker gets a pseudonym made with a key
that exists only during the export, so the file cannot be joined back to the
database or to another export.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from core.privacy import redact
from core.storage.store import Store

_MENTION = re.compile(
    r"<@[!&]?[\w]+>|<#\w+(?:\|[^>]*)?>|<!(?:subteam\^)?\w+(?:\|[^>]*)?>|(?<![\w.])@\w{2,}"
)
_LINK = re.compile(r"<?https?://[^\s>]+>?")


def scrub(text: str) -> str:
    """Personal data out of a message: mentions, links, e-mail, phone and card numbers."""
    return redact(_LINK.sub("[link]", _MENTION.sub("@someone", text)))


@dataclass(frozen=True, slots=True)
class ExportSummary:
    conversations: int
    messages: int
    people: int


_QUERY = """
SELECT t.platform, t.workspace, t.channel, t.thread, t.private, t.user_key, t.role, t.text,
       t.created_at, t.answers
FROM turns AS t
WHERE t.bot = ?
  AND t.role IN ('user', 'assistant', 'reset')
  AND (
    t.role = 'reset' OR EXISTS (
      SELECT 1 FROM consents AS c
      WHERE c.platform = t.platform AND c.user_key = t.user_key AND c.purpose = 'training'
    )
  )
  AND NOT EXISTS (
    SELECT 1 FROM optouts AS o WHERE o.platform = t.platform AND o.user_key = t.user_key
  )
ORDER BY t.platform, t.workspace, t.channel, t.thread, t.id
"""


async def _rows(store: Store, bot: str) -> list[Any]:
    return await store.rows(_QUERY, (bot,))


def _sessions(rows: list[Any], gap_s: float) -> Iterator[tuple[tuple[Any, ...], list[Any]]]:
    """Rows cut into sessions: per conversation, at a /reset or a pause over ``gap_s``."""
    key: tuple[Any, ...] | None = None
    session: list[Any] = []
    for row in rows:
        here = tuple(row[:4])
        role, created = row[6], row[8]
        if here != key or role == "reset" or (session and created - session[-1][8] > gap_s):
            if session:
                yield key or (), session
            session = []
            key = here
        if role != "reset":
            session.append(row)
    if session and key is not None:
        yield key, session


async def export_training(
    store: Store, bot: str, persona: str, out: Path, *, gap_hours: float = 6.0
) -> ExportSummary:
    """Write the consented conversations of ``bot`` to ``out`` (JSONL); returns counts."""
    key = secrets.token_bytes(32)  # pseudonyms for this file only

    def pseudonym(prefix: str, *parts: object) -> str:
        text = "\x1f".join(str(p) for p in parts)
        return prefix + hmac.new(key, text.encode(), hashlib.sha256).hexdigest()[:12]

    open_ = store.privacy.cipher.open
    conversations = messages = 0
    people: set[str] = set()
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.with_name(out.name + ".partial")
    with partial.open("w", encoding="utf-8") as file:
        for (platform, *_), session in _sessions(await _rows(store, bot), gap_hours * 3600):
            chat: list[dict[str, str]] = []
            speakers: list[str] = []
            for row in session:
                role, text = row[6], scrub(open_(row[7])).strip()
                if not text:
                    continue
                if role == "assistant" and not chat:
                    continue  # a reply whose question is not in the export
                if chat and chat[-1]["role"] == role:
                    chat[-1]["content"] += "\n" + text
                else:
                    chat.append({"role": role, "content": text})
                if role == "user":
                    speakers.append(pseudonym("user-", platform, row[5]))
            while chat and chat[-1]["role"] == "user":
                chat.pop()  # no reply to learn from
            if not chat:
                continue
            record = {
                "messages": [{"role": "system", "content": persona.strip()}, *chat],
                "conversation": pseudonym("conversation-", *session[0][:4]),
                "speakers": sorted(set(speakers)),
            }
            file.write(json.dumps(record, ensure_ascii=False) + "\n")
            conversations += 1
            messages += len(chat)
            people.update(speakers)
    partial.replace(out)
    return ExportSummary(conversations, messages, len(people))
