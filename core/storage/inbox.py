"""The durable inbox: what the bot has been handed and not yet finished answering.

Every message the bot will answer is written here, committed, *before* its platform
is told it was received (Telegram's next offset or the webhook's 200, Slack's ack, the
web socket's receipt): a process killed at any moment after that finds it again on
start. A row goes

    pending  --(the turn's message and reply committed)-->  stored  --(sent)-->  done

("sent" is put on record at once in the :class:`Journal` and reaches the row a moment
later, many rows at once), and its text is dropped when it is done; the row itself stays
a day (``inbox_dedupe_s``)
as the record that this platform message id was answered, so that a platform delivering
it again after a restart does not get it answered twice.

While a reply streams, the platform's id of the message showing it and the text shown so
far are kept on record (:meth:`Inbox.shown`, in the :class:`Journal`, folded into the
row on start): after a crash that message is finished (edited to the whole reply), never
left half-shown with no record.

On start (:meth:`Inbox.unfinished`) the rows that are not done are the work left: a
``stored`` one has its reply already and is only sent; a ``pending`` one is answered
again from the start, or, past ``inbox_answer_within_s``, told that the bot was down.
Each row names the process that holds it and until when (``worker``, ``lease_until``):
the columns the scale-out work queue claims rows by; one process holds them all.

The row carries the message as sealed JSON (encrypted when a key is set) with the raw
ids needed to answer it; it is the person's data like any other: /forget erases it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import secrets
import socket
import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from core.storage.store import Store
from core.types import Attachment, Message, Place, PlaceKind, Speaker

log = logging.getLogger(__name__)

CURSOR_KEPT_S = 30 * 86400.0
"""How long the last message accepted in a place is kept (catching up reaches no further)."""

WORKER = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"
"""This process, as the inbox rows it holds name it."""


@dataclass(frozen=True, slots=True)
class Shown:
    """A reply on screen while it streamed: the platform's id of its message, its text."""

    message_id: str
    text: str


@dataclass(frozen=True, slots=True)
class Entry:
    """One unfinished row of the inbox, as a restart finds it."""

    id: int
    message: Message
    state: str
    """``pending`` (not answered yet) or ``stored`` (the reply is stored, not sent)."""
    received_at: float
    shown: Shown | None = None
    reply: str | None = None
    """For a ``stored`` row: the stored reply's text."""


def dump_message(message: Message) -> str:
    """``message`` as JSON (everything but its native object)."""
    speaker, place = message.speaker, message.place
    return json.dumps(
        {
            "speaker": [speaker.platform, speaker.user_id, speaker.display_name, speaker.is_bot],
            "place": [
                place.platform,
                place.channel,
                place.kind.value,
                place.workspace,
                place.thread,
                place.person,
            ],
            "text": message.text,
            "id": message.id,
            "time": message.time.isoformat(),
            "mentions_bot": message.mentions_bot,
            "reply_to": message.reply_to,
            "reply_to_user": message.reply_to_user,
            "attachments": [[a.name, a.content_type, a.size, a.url] for a in message.attachments],
        },
        ensure_ascii=False,
    )


def load_message(text: str) -> Message:
    """The message :func:`dump_message` wrote."""
    data = json.loads(text)
    platform, user_id, name, is_bot = data["speaker"]
    p_platform, channel, kind, workspace, thread, person = data["place"]
    return Message(
        Speaker(platform, user_id, name, bool(is_bot)),
        Place(p_platform, channel, PlaceKind(kind), workspace, thread, person),
        data["text"],
        id=data["id"],
        time=datetime.fromisoformat(data["time"]),
        mentions_bot=bool(data["mentions_bot"]),
        reply_to=data["reply_to"],
        reply_to_user=data["reply_to_user"],
        attachments=tuple(Attachment(*a) for a in data["attachments"]),
    )


class Journal:
    """What must be on record the moment it happens, faster than a database commit: an
    append-only file beside the database, one JSON line a record, each written with one
    ``write()`` before anything else can run. Two kinds of record:

    - *shown*: a streamed reply's platform message id and text, as soon as the platform
      has returned the id. Until then a kill leaves that message half-shown with nobody
      knowing its id, and a database commit queues behind every turn's reads and writes
      (tens of milliseconds under load: the kill drill left 16 replies of 20 kills
      half-shown in that gap);
    - *answered*: the reply was sent. The database learns it a moment later, many at once
      (:meth:`Inbox.done`), so a turn costs no commit of its own for it.

    A ``write()`` reaches the page cache in microseconds and survives the process being
    killed (a power cut can lose the last lines, as with any file not yet synced: then a
    reply may be sent again). On start the records are folded into the inbox rows and the
    file emptied; it is emptied again whenever nothing in it is still needed, so a
    reply's text stays in it no longer than the reply streams. Text is sealed (encrypted
    when a key is set).
    """

    def __init__(self, path: Path, store: Store) -> None:
        self.path = path
        self.store = store
        self.live: set[int] = set()
        """Entries with records the database does not have yet."""
        self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)

    def _write(self, record: list[object]) -> None:
        os.write(self._fd, (json.dumps(record) + "\n").encode())

    def shown(self, entry: int, message_id: str, text: str) -> None:
        self._write(["shown", entry, message_id, self.store.privacy.cipher.seal(text)])
        self.live.add(entry)

    def answered(self, entry: int) -> None:
        self._write(["answered", entry])
        self.live.add(entry)

    def settled(self, entries: Iterable[int]) -> None:
        """The database has what the records of ``entries`` say (or no longer needs it)."""
        self.live.difference_update(entries)
        if not self.live:
            self.clear()

    def clear(self) -> None:
        """Empty the file (nothing recorded in it is needed any more)."""
        self.live.clear()
        os.ftruncate(self._fd, 0)

    def read(self) -> tuple[dict[int, Shown], set[int]]:
        """The last shown reply of each entry, and the entries answered (a line cut short
        by a crash is skipped)."""
        shown: dict[int, Shown] = {}
        answered: set[int] = set()
        open_ = self.store.privacy.cipher.open
        with contextlib.suppress(FileNotFoundError), self.path.open(encoding="utf-8") as lines:
            for line in lines:
                try:
                    kind, entry, *rest = json.loads(line)
                    if kind == "shown":
                        message_id, sealed = rest
                        shown[int(entry)] = Shown(str(message_id), open_(sealed))
                    elif kind == "answered":
                        answered.add(int(entry))
                except Exception:  # torn by a crash, or sealed with another key
                    continue
        return shown, answered

    def close(self) -> None:
        os.close(self._fd)


class Inbox:
    """One bot's inbox in ``store``."""

    def __init__(self, store: Store, bot: str, *, worker: str = WORKER) -> None:
        self.store = store
        self.bot = bot
        self.worker = worker
        self.journal = Journal(store.path.with_name("inbox-journal.log"), store)
        self._answered: set[int] = set()
        """Sent, on record in the journal, not yet marked done in the database."""
        self._marking: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Fold what the journal holds into the rows (a crash left it), then empty it."""
        shown, answered = self.journal.read()
        if shown:
            async with self.store.transaction() as db:
                for entry, record in shown.items():
                    await db.execute(
                        "UPDATE inbox SET shown_id = ?, shown_text = ? WHERE id = ?"
                        " AND state != 'done'",
                        (record.message_id, self.store.privacy.cipher.seal(record.text), entry),
                    )
        if answered:
            await self._mark_done(answered)
        self.journal.clear()

    def close(self) -> None:
        self.journal.close()

    def _event(self, message: Message) -> str | None:
        if not message.id:
            return None  # nothing to recognise a second delivery by
        place = message.place
        return self.store.privacy.pseudonymize(
            place.platform, f"{place.workspace}\x1f{place.channel}\x1f{message.id}"
        )

    async def accept(self, message: Message, *, lease_s: float = 0.0) -> int | None:
        """Write ``message`` down, durably (committed when this returns); its row id, or
        None when this platform message was accepted before (a second delivery)."""
        privacy = self.store.privacy
        now = time.time()
        async with self.store.transaction() as db:
            cursor = await db.execute(
                "INSERT OR IGNORE INTO inbox (bot, platform, event, conversation, user_key,"
                " state, message, worker, lease_until, received_at, updated_at)"
                " VALUES (?, ?, ?, ?, ?, 'pending', ?, ?, ?, ?, ?)",
                (
                    self.bot,
                    message.place.platform,
                    self._event(message),
                    privacy.pseudonymize(message.place.platform, str(message.place.conversation)),
                    privacy.user_key(message.place.platform, message.speaker.user_id),
                    privacy.cipher.seal(dump_message(message)),
                    self.worker,
                    now + lease_s if lease_s else None,
                    now,
                    now,
                ),
            )
            if not cursor.rowcount:
                return None
            entry = cursor.lastrowid
            if message.id:  # where to catch up from, should the bot be away
                place = message.place
                await db.execute(
                    "INSERT INTO cursors (bot, platform, place, channel, user_key, last_id,"
                    " seen_at) VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (bot, platform, place)"
                    " DO UPDATE SET last_id = excluded.last_id, seen_at = excluded.seen_at",
                    (
                        self.bot,
                        place.platform,
                        privacy.pseudonymize(
                            place.platform,
                            f"{place.workspace}\x1f{place.channel}\x1f{place.thread}",
                        ),
                        privacy.cipher.seal(place.thread or place.channel),
                        privacy.user_key(place.platform, message.speaker.user_id)
                        if place.is_private
                        else "",
                        message.id,
                        now,
                    ),
                )
        return entry

    async def last_seen(
        self, platform: str, *, within_s: float, limit: int
    ) -> list[tuple[str, str]]:
        """(channel id, last message id accepted there) of the ``limit`` channels (a
        thread's own id, where the platform gives threads one) of
        ``platform`` where a message was accepted in the last ``within_s`` seconds, the
        most recent first."""
        rows = await self.store.rows(
            "SELECT channel, last_id FROM cursors WHERE bot = ? AND platform = ?"
            " AND seen_at >= ? ORDER BY seen_at DESC LIMIT ?",
            (self.bot, platform, time.time() - within_s, limit),
        )
        open_ = self.store.privacy.cipher.open
        return [(open_(channel), str(last_id)) for channel, last_id in rows]

    async def stored(self, entry: int, reply_turn: int | None) -> None:
        """The turn's message and reply are stored (call it inside that transaction)."""
        async with self.store.transaction() as db:
            await db.execute(
                "UPDATE inbox SET state = 'stored', reply_turn = ?, updated_at = ? WHERE id = ?",
                (reply_turn, time.time(), entry),
            )

    async def shown(self, entry: int, message_id: str, text: str) -> None:
        """The reply being streamed shows ``text`` in the platform message ``message_id``:
        on record at once, in the journal (before this coroutine first yields)."""
        self.journal.shown(entry, message_id, text)

    async def done(self, entry: int) -> None:
        """Answered: on record at once (the journal); the database marks it done (its text
        dropped, the row kept as the record of the message id) a moment later, together
        with the others answered meanwhile (:meth:`flush` waits for that)."""
        self.journal.answered(entry)
        self._answered.add(entry)
        if self._marking is None or self._marking.done():
            self._marking = asyncio.get_running_loop().create_task(self._mark_answered())

    async def flush(self) -> None:
        """Wait until every answered message is marked done in the database."""
        while self._marking is not None and not self._marking.done():
            await asyncio.shield(self._marking)
        if self._answered:  # the last attempt failed: once more, now
            await self._mark_answered()

    async def _mark_answered(self) -> None:
        await asyncio.sleep(0)  # the turns finishing at the same moment come along
        while self._answered:
            entries = set(self._answered)  # kept there until marked (see unfinished)
            try:
                await self._mark_done(entries)
            except Exception:  # the journal still has them; tried again with the next
                log.exception("inbox: could not mark %d answered message(s) done", len(entries))
                return
            self._answered -= entries

    async def _mark_done(self, entries: set[int]) -> None:
        ordered = sorted(entries)
        async with self.store.transaction() as db:
            for at in range(0, len(ordered), 500):  # within SQLite's limit of parameters
                chunk = ordered[at : at + 500]
                await db.execute(
                    "UPDATE inbox SET state = 'done', message = NULL, shown_text = NULL,"
                    " worker = '', lease_until = NULL, updated_at = ?"
                    f" WHERE id IN ({','.join('?' * len(chunk))})",
                    (time.time(), *chunk),
                )
        self.journal.settled(entries)

    async def unfinished(self, platform: str) -> list[Entry]:
        """What ``platform``'s messages left unfinished (a stop or a crash), oldest first;
        this process takes them over."""
        rows = await self.store.rows(
            "SELECT i.id, i.state, i.message, i.shown_id, i.shown_text, i.received_at, t.text"
            " FROM inbox i LEFT JOIN turns t ON t.id = i.reply_turn"
            " WHERE i.bot = ? AND i.platform = ? AND i.state != 'done' ORDER BY i.id",
            (self.bot, platform),
        )
        open_ = self.store.privacy.cipher.open
        entries: list[Entry] = []
        for entry, state, sealed, shown_id, shown_text, received_at, reply in rows:
            if entry in self._answered:  # answered just now; the database is told soon
                continue
            try:
                message = load_message(open_(sealed))
            except Exception as error:  # another key, or a row written by hand
                log.error("inbox: cannot read message %d (%s); dropped", entry, error)
                await self.done(entry)
                continue
            # shown_id '' with a text: it was being posted, its id never came back
            shown = Shown(shown_id, open_(shown_text)) if shown_text is not None else None
            entries.append(
                Entry(
                    entry,
                    message,
                    state,
                    received_at,
                    shown,
                    open_(reply) if reply is not None else None,
                )
            )
        if entries:
            async with self.store.transaction() as db:
                await db.execute(
                    "UPDATE inbox SET worker = ? WHERE bot = ? AND platform = ?"
                    " AND state != 'done'",
                    (self.worker, self.bot, platform),
                )
        return entries

    async def prune(self, older_than_s: float) -> int:
        """Delete the records of messages answered more than ``older_than_s`` ago, and the
        places where nothing was accepted for :data:`CURSOR_KEPT_S`."""
        now = time.time()
        async with self.store.transaction() as db:
            cursor = await db.execute(
                "DELETE FROM inbox WHERE state = 'done' AND updated_at < ?",
                (now - older_than_s,),
            )
            await db.execute("DELETE FROM cursors WHERE seen_at < ?", (now - CURSOR_KEPT_S,))
        return cursor.rowcount
