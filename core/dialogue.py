"""Dialogue manager, short-term part: what the model sees for one turn.

The prompt is the persona, then as many of the conversation's most recent turns
as fit the token budget, then the new message. Tokens are counted with the
generator's own tokenizer. A turn is either in the prompt whole or not at all,
and the window starts with a user turn so exchanges are never cut in half.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from core.errors import UserError
from core.generation.base import Generator
from core.storage import StoredTurn
from core.types import ChatMessage, Role


@dataclass(frozen=True, slots=True)
class Context:
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


def _system(
    persona: str,
    summary: str | None,
    memories: Sequence[Remembered],
    group: bool,
    guidance: str = "",
) -> ChatMessage:
    parts = [persona.strip()]
    if guidance:
        parts.append(guidance)
    if summary:
        parts.append(f"Summary of the earlier conversation: {summary}")
    if memories:
        lines = "\n".join(f'- "{m.text}"' + (f" ({m.age})" if m.age else "") for m in memories)
        heading = "Earlier in this channel, people said" if group else "Earlier, the user told you"
        parts.append(f"{heading} (use it when it helps you answer):\n{lines}")
    return ChatMessage(Role.SYSTEM, "\n\n".join(parts))


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
    memories: Sequence[Remembered] = (),
    memory_budget: int = 0,
    guidance: str = "",
) -> Context:
    """Fit persona (and ``guidance``), summary, memories, recent ``history`` and ``incoming``.

    The summary and memories get at most ``memory_budget`` tokens; recent turns
    take what is left. Whatever does not fit is left out whole.
    """
    new = ChatMessage(Role.USER, speaker_line(speaker_name, incoming, group))
    cost = generator.count_tokens([_system(persona, None, (), group, guidance), new])
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
        if extra <= extras_limit:
            kept_summary, extras = summary, extra
    kept_memories: list[Remembered] = []
    for memory in memories:
        extra = generator.count_text(memory.text) + 6 + (12 if not kept_memories else 0)
        if extras + extra > extras_limit:
            break
        kept_memories.append(memory)
        extras += extra
    cost += extras

    chosen: list[tuple[StoredTurn, ChatMessage]] = []
    for turn in reversed(history):
        message = _as_chat(turn, group)
        extra = generator.count_message(message)
        if cost + extra > budget:
            break
        chosen.append((turn, message))
        cost += extra
    chosen.reverse()

    # The estimates above are exact for most chat templates; check the real rendering
    # anyway, and drop the oldest turn (then the least relevant memory) until it fits.
    while True:
        while chosen and chosen[0][0].role is not Role.USER:
            chosen.pop(0)
        system = _system(persona, kept_summary, kept_memories, group, guidance)
        messages = (system, *(m for _, m in chosen), new)
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
    return Context(
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
