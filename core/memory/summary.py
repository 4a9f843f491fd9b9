"""Rolling summaries: turns that fall out of the window are folded into one summary.

The summary belongs to its conversation (and so to that conversation's scope);
the prompt builder places it before the recent turns. Folding runs after the
reply has been sent, so it never delays the answer it follows.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any

from core.generation.base import BACKGROUND_MAX_TOKENS, Generator
from core.privacy import Scope
from core.settings import GenerationSettings
from core.storage.store import Store, StoredTurn
from core.types import ChatMessage, ConversationKey, Message, Role

log = logging.getLogger(__name__)

INSTRUCTIONS = (
    "Summarise the conversation below in at most three short sentences. Keep people's "
    "names, what they said about themselves, and anything left open. Write only the summary."
)
PARAMS = GenerationSettings(
    max_new_tokens=BACKGROUND_MAX_TOKENS, temperature=0.0, repetition_penalty=1.1
)


@dataclass(frozen=True, slots=True)
class Summary:
    id: int
    text: str
    through_turn: int


class Summaries:
    def __init__(self, store: Store) -> None:
        self.store = store

    async def current(self, bot: str, message: Message, scope: Scope) -> Summary | None:
        where, key = self.store.conversation_where(bot, message.place)
        in_scope, allowed = scope.where()
        row = await self.store.row(
            f"SELECT id, text, through_turn FROM summaries WHERE {where} AND {in_scope}",
            (*key, *allowed),
        )
        if row is None:
            return None
        return Summary(row[0], self.store.privacy.cipher.open(row[1]), row[2])

    async def save(self, bot: str, message: Message, text: str, through_turn: int) -> None:
        platform, workspace, channel, thread, private, user_key = self.store.where_said(message)
        async with self.store.transaction() as db:
            await db.execute(
                "INSERT INTO summaries (bot, platform, workspace, channel, thread, person,"
                " private, user_key, text, through_turn, updated_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
                " ON CONFLICT (bot, platform, workspace, channel, thread, person) DO UPDATE SET"
                " text = excluded.text, through_turn = excluded.through_turn,"
                " updated_at = excluded.updated_at",
                (
                    bot,
                    platform,
                    workspace,
                    channel,
                    thread,
                    self.store.privacy.place(message.place).person,
                    private,
                    user_key if private else "",
                    self.store.seal(text),
                    through_turn,
                    time.time(),
                ),
            )

    async def fold(
        self,
        generator: Generator,
        bot: str,
        message: Message,
        scope: Scope,
        *,
        window_start: int,
        at_least: int,
        limit: int = 40,
    ) -> bool:
        """Fold the turns before ``window_start`` not yet summarised, if there are enough."""
        summary = await self.current(bot, message, scope)
        after = summary.through_turn if summary else 0
        older = await self.store.turns_between(
            bot, message.place, scope, after=after, before=window_start, limit=limit
        )
        if len(older) < at_least:
            return False
        prompt, folded = fitted(generator, summary, older, bot)
        text = (await generator.generate(prompt, PARAMS, background=True)).strip()
        if not text:
            log.warning("summary of %s came back empty", message.place.conversation)
            return False
        await self.save(bot, message, text, folded[-1].id)
        log.info("folded %d turns of %s into its summary", len(folded), message.place.conversation)
        return True


Spawn = Callable[[Coroutine[Any, Any, Any]], "asyncio.Task[Any]"]

FOLD_MEMO = 10_000
"""Conversations whose last fold check is remembered (to skip checks that cannot fold)."""


class Folding:
    """Folds the turns that left a conversation's window into its summary, after the turn
    (``spawn`` runs it off the reply path): one fold per conversation at a time, and no
    second try until the window has moved on since a fold found too little."""

    def __init__(
        self,
        summaries: Summaries,
        generator: Generator,
        bot: str,
        *,
        at_least: int,
        spawn: Spawn,
    ) -> None:
        self.summaries = summaries
        self.generator = generator
        self.bot = bot
        self.at_least = at_least
        self._spawn = spawn
        self._running: set[asyncio.Task[Any]] = set()
        self._folding: set[ConversationKey] = set()
        self._nothing_to_fold: OrderedDict[ConversationKey, int] = OrderedDict()
        """Per conversation, the window start at which the last fold found too little."""
        self.closed = False

    def later(self, message: Message, scope: Scope, *, window_start: int) -> None:
        """Fold what left ``message``'s window (which now starts at ``window_start``)."""
        key = message.place.conversation
        if key in self._folding or self.closed:
            return
        if self._nothing_to_fold.get(key) == window_start:
            return  # no turn has left the window since that check
        self._folding.add(key)
        task = self._spawn(self._fold(key, message, scope, window_start))
        self._running.add(task)
        task.add_done_callback(self._running.discard)

    async def _fold(
        self, key: ConversationKey, message: Message, scope: Scope, window_start: int
    ) -> None:
        try:
            folded = await self.summaries.fold(
                self.generator,
                self.bot,
                message,
                scope,
                window_start=window_start,
                at_least=self.at_least,
            )
        finally:
            self._folding.discard(key)
        if folded:
            self._nothing_to_fold.pop(key, None)
        else:
            self._nothing_to_fold[key] = window_start
            self._nothing_to_fold.move_to_end(key)
            if len(self._nothing_to_fold) > FOLD_MEMO:
                self._nothing_to_fold.popitem(last=False)

    @property
    def running(self) -> int:
        """Folds in progress."""
        return len(self._running)

    async def finish(self) -> None:
        """Wait for the folds in progress."""
        await asyncio.gather(*list(self._running), return_exceptions=True)


def fitted(
    generator: Generator, summary: Summary | None, turns: list[StoredTurn], bot: str
) -> tuple[list[ChatMessage], list[StoredTurn]]:
    """The summary prompt for as many of ``turns`` (oldest first) as the model's window
    holds with the summary's reply; the rest wait for the next fold. A single turn too
    long for the window on its own is cut (its start kept), so the instructions and the
    summary so far are never what the engine drops."""
    room = generator.context_window - PARAMS.max_new_tokens

    def prompt(lines: list[str]) -> list[ChatMessage]:
        head = [f"Summary so far: {summary.text}", ""] if summary else []
        body = "\n".join([*head, "Conversation:", *lines])
        return [ChatMessage(Role.SYSTEM, INSTRUCTIONS), ChatMessage(Role.USER, body)]

    def over(lines: list[str]) -> int:
        return generator.count_tokens(prompt(lines)) - room

    lines = [_line(turn, bot) for turn in turns]
    take, beyond = 0, len(lines)  # how many lines fit: at least take, at most beyond
    while take < beyond:
        middle = (take + beyond + 1) // 2
        if over(lines[:middle]) <= 0:
            take = middle
        else:
            beyond = middle - 1
    if take == 0 and lines:
        take, line = 1, lines[0]
        while len(line) > 1 and (excess := over([line])) > 0:
            line = line[: max(1, len(line) - max(excess * 2, len(line) // 8))]
        lines[0] = line
    return prompt(lines[:take]), turns[:take]


def _line(turn: StoredTurn, bot: str) -> str:
    who = bot if turn.role is Role.ASSISTANT else (turn.display_name or "someone")
    return f"{who}: {turn.text}"
