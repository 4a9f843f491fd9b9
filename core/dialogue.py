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


def speaker_line(name: str, text: str, group: bool) -> str:
    """In a group the model must know who said what; in a DM it is always the one user."""
    return f"{name}: {text}" if group and name else text


def budget_for(generator: Generator, budget_tokens: int, max_new_tokens: int) -> int:
    """Prompt tokens allowed: the profile's budget, capped so the reply still fits the window."""
    return max(0, min(budget_tokens, generator.context_window - max_new_tokens))


def build_context(
    generator: Generator,
    *,
    persona: str,
    history: Sequence[StoredTurn],
    incoming: str,
    budget: int,
    group: bool = False,
    speaker_name: str = "",
) -> Context:
    """Fit persona + recent ``history`` (oldest first) + ``incoming`` into ``budget`` tokens."""
    system = ChatMessage(Role.SYSTEM, persona)
    new = ChatMessage(Role.USER, speaker_line(speaker_name, incoming, group))
    cost = generator.count_tokens([system, new])
    if cost > budget:
        raise UserError(
            f"That message is too long for me to read in one go (about {cost} tokens "
            f"with my instructions; I can take {budget}). Could you split it up?"
        )

    chosen: list[tuple[StoredTurn, ChatMessage]] = []
    for turn in reversed(history):
        message = _as_chat(turn, group)
        extra = generator.count_message(message)
        if cost + extra > budget:
            break
        chosen.append((turn, message))
        cost += extra
    chosen.reverse()

    # The per-message estimate is exact for most chat templates; check the real
    # rendering anyway and drop the oldest turns until it fits.
    while True:
        while chosen and chosen[0][0].role is not Role.USER:
            chosen.pop(0)
        messages = (system, *(m for _, m in chosen), new)
        tokens = generator.count_tokens(messages)
        if tokens <= budget or not chosen:
            break
        chosen.pop(0)
    return Context(messages, tuple(t.id for t, _ in chosen), tokens, budget)


def _as_chat(turn: StoredTurn, group: bool) -> ChatMessage:
    if turn.role is Role.ASSISTANT:
        return ChatMessage(Role.ASSISTANT, turn.text)
    return ChatMessage(Role.USER, speaker_line(turn.display_name or turn.user_id, turn.text, group))
