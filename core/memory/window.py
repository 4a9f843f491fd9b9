"""Dialogue manager, short-term part: what the model sees for one turn.

The prompt is the persona, then as many of the conversation's most recent turns
as fit the token budget, then the new message. Tokens are counted with the
generator's own tokenizer. A turn is either in the prompt whole or not at all,
and the window starts with a user turn so exchanges are never cut in half.

The prompt is laid out so that one turn's prompt is the start of the next one's,
which lets an engine that caches the prompt (llama.cpp) read only what is new:

- what changes every turn (the emotion guidance, plugins' notes and the recalled
  memories) goes in a note just before the new message, where the template allows a
  system message there (:attr:`Generator.late_system`). The summary, which changes only
  when older turns are folded into it, enters the conversation where it was first used
  (just before the message its first reply answered) and stays at that place for as long
  as it is current: a new summary is added at the end, like a new turn, instead of
  changing the start of the prompt, which would make everything after it new to the
  engine. Where the template takes no late system message, all of it joins the persona;
- the window does not slide one turn at a time. It keeps starting where the last
  reply's window started for as long as that fits; when it no longer does, it moves
  on in one jump, to a start that fills :data:`REFILL` of the room, so the history is
  read again only once every several turns, however long the conversation gets.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from core.errors import UserError
from core.generation.base import Generator
from core.storage.store import StoredTurn
from core.types import ChatMessage, Role


@dataclass(frozen=True, slots=True)
class Prompt:
    """What the model is given for one reply, and which stored turns and memories it holds."""

    messages: tuple[ChatMessage, ...]
    turn_ids: tuple[int, ...]
    """Stored turns included, oldest first."""
    tokens: int
    budget: int
    memory_ids: tuple[int, ...] = ()
    """Long-term memories placed in the prompt."""
    summary_used: bool = False


@dataclass(frozen=True, slots=True)
class Remembered:
    """A long-term memory offered to the prompt builder, most relevant first."""

    id: int
    text: str
    age: str = ""


def speaker_line(name: str, text: str, group: bool) -> str:
    """In a group the model must know who said what; in a DM it is always the one user."""
    return f"{name}: {text}" if group and name else text


def budget_for(generator: Generator, budget_tokens: int, max_new_tokens: int) -> int:
    """Prompt tokens allowed: the profile's budget, capped so the reply still fits the window."""
    return max(0, min(budget_tokens, generator.context_window - max_new_tokens))


REFILL = 0.6
"""Share of the room for turns that the window fills when it jumps forward."""


def _note(memories: Sequence[Remembered], group: bool, guidance: str) -> list[str]:
    parts = []
    if guidance:
        parts.append(guidance)
    if memories:
        lines = "\n".join(f'- "{m.text}"' + (f" ({m.age})" if m.age else "") for m in memories)
        heading = "Earlier in this channel, people said" if group else "Earlier, the user told you"
        parts.append(f"{heading} (use it when it helps you answer):\n{lines}")
    return parts


def _assemble(
    generator: Generator,
    persona: str,
    summary: str | None,
    note: list[str],
    window: Sequence[ChatMessage],
    new: ChatMessage,
    summary_at: int | None = None,
) -> tuple[ChatMessage, ...]:
    """The prompt: persona, window with the summary at ``summary_at`` (default: its end),
    the note and the new message, where the model takes system messages there; else the
    summary and note join the persona."""
    persona = persona.strip()
    said = f"Summary of the earlier conversation: {summary}" if summary else ""
    if generator.late_system:
        middle = list(window)
        if said:
            at = len(middle) if summary_at is None else summary_at
            middle.insert(at, ChatMessage(Role.SYSTEM, said))
        late = (ChatMessage(Role.SYSTEM, "\n\n".join(note)),) if note else ()
        return (ChatMessage(Role.SYSTEM, persona), *middle, *late, new)
    return (
        ChatMessage(Role.SYSTEM, "\n\n".join(filter(None, [persona, said, *note]))),
        *window,
        new,
    )


def _summary_at(window: Sequence[StoredTurn], summary_version: int | None) -> int:
    """Where the current summary sits in the window: before the exchange whose reply
    first used it, where it entered the prompt; at the end while no reply has used it.
    A reply notes the version it used (:attr:`StoredTurn.summary`: the last turn the
    summary covered), so a new version of the same rolling summary joins at the end."""
    if summary_version is not None:
        for i, turn in enumerate(window):
            if turn.role is Role.ASSISTANT and turn.summary == summary_version:
                return i - 1 if i and window[i - 1].role is Role.USER else i
    return len(window)


def _window_start(history: Sequence[StoredTurn], size: Callable[[int], int], room: int) -> int:
    """Index of the window's first turn: where the last reply's window started if all
    since then fits, else as far back as fits (:data:`REFILL` of ``room`` after an
    overflow, so that the next turns fit again). ``size(i)`` is turn i's cost; it is
    asked only for the turns the decision needs, newest first."""

    def fill(limit: int, stop: int = 0) -> int:
        start, used = len(history), 0
        while start > stop and used + size(start - 1) <= limit:
            start -= 1
            used += size(start)
        return start

    anchor = next((t.context[0] for t in reversed(history) if t.context), None)
    if anchor is None:
        return fill(room)
    start = next((i for i, t in enumerate(history) if t.id >= anchor), len(history))
    if fill(room, stop=start) == start:  # everything since the anchor still fits
        return start
    return fill(int(room * REFILL))


def build_context(
    generator: Generator,
    *,
    persona: str,
    history: Sequence[StoredTurn],
    incoming: str,
    budget: int,
    group: bool = False,
    speaker_name: str = "",
    summary: str | None = None,
    summary_version: int | None = None,
    memories: Sequence[Remembered] = (),
    memory_budget: int = 0,
    guidance: str = "",
) -> Prompt:
    """Fit persona (and ``guidance``), summary, memories, recent ``history`` and ``incoming``.

    The summary and memories get at most ``memory_budget`` tokens; recent turns
    take what is left. Whatever does not fit is left out whole.
    """
    new = ChatMessage(Role.USER, speaker_line(speaker_name, incoming, group))
    note = _note((), group, guidance)
    cost = generator.count_tokens(_assemble(generator, persona, None, note, (), new))
    if cost > budget:
        raise UserError(
            f"That message is too long for me to read in one go (about {cost} tokens "
            f"with my instructions; I can take {budget}). Could you split it up?"
        )

    # Summary and memories, in order of importance, within their share.
    extras_limit = min(memory_budget, budget - cost)
    extras = 0
    kept_summary = None
    if summary:
        extra = generator.count_text(summary) + 8
        if generator.late_system:
            extra += generator.per_message_overhead  # a message of its own
        if extra <= extras_limit:
            kept_summary, extras = summary, extra
    kept_memories: list[Remembered] = []
    for memory in memories:
        extra = generator.count_text(memory.text) + 6 + (12 if not kept_memories else 0)
        if extras + extra > extras_limit:
            break
        kept_memories.append(memory)
        extras += extra
    if kept_memories and not guidance and generator.late_system:
        extras += generator.per_message_overhead  # the note becomes a message of its own
    cost += extras

    turns = [(turn, _as_chat(turn, group)) for turn in history]
    size = functools.cache(lambda i: generator.count_message(turns[i][1]))
    chosen = turns[_window_start(history, size, budget - cost) :]

    # The estimates above are exact for most chat templates; check the real rendering
    # anyway, and drop the oldest turn (then the least relevant memory) until it fits.
    while True:
        while chosen and chosen[0][0].role is not Role.USER:
            chosen.pop(0)
        note = _note(kept_memories, group, guidance)
        window = [m for _, m in chosen]
        at = _summary_at([t for t, _ in chosen], summary_version)
        messages = _assemble(generator, persona, kept_summary, note, window, new, at)
        tokens = generator.count_tokens(messages)
        if tokens <= budget:
            break
        if chosen:
            chosen.pop(0)
        elif kept_memories:
            kept_memories.pop()
        elif kept_summary:
            kept_summary = None
        else:  # cannot happen: persona + new alone were checked to fit
            break
    return Prompt(
        messages,
        tuple(t.id for t, _ in chosen),
        tokens,
        budget,
        tuple(m.id for m in kept_memories),
        kept_summary is not None,
    )


def _as_chat(turn: StoredTurn, group: bool) -> ChatMessage:
    if turn.role is Role.ASSISTANT:
        return ChatMessage(Role.ASSISTANT, turn.text)
    return ChatMessage(Role.USER, speaker_line(turn.display_name or "someone", turn.text, group))
