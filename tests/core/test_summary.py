"""The summary prompt fits the model's window: as many turns as fit, oldest first."""

from __future__ import annotations

from core.generation.fake import FakeGenerator
from core.memory.summary import INSTRUCTIONS, PARAMS, Summary, fitted
from core.storage.store import StoredTurn
from core.types import Role


def turn(n: int, words: int) -> StoredTurn:
    role = Role.USER if n % 2 else Role.ASSISTANT
    return StoredTurn(n, role, "u", "Ana", f"turn{n} " + "word " * words, float(n))


def test_all_turns_that_fit_are_folded() -> None:
    generator = FakeGenerator(context_window=4096)
    turns = [turn(n, 10) for n in range(1, 41)]
    prompt, folded = fitted(generator, None, turns, "Sol")
    assert folded == turns
    assert prompt[0].content == INSTRUCTIONS and "turn40" in prompt[1].content


def test_turns_past_the_window_wait_for_the_next_fold() -> None:
    generator = FakeGenerator(context_window=400)
    summary = Summary(1, "They talked about gardens.", 0)
    turns = [turn(n, 30) for n in range(1, 41)]
    prompt, folded = fitted(generator, summary, turns, "Sol")
    assert 3 <= len(folded) < 40 and folded == turns[: len(folded)]  # the oldest, in order
    assert generator.count_tokens(prompt) + PARAMS.max_new_tokens <= 400
    body = prompt[1].content
    assert body.startswith("Summary so far: They talked about gardens.")
    assert f"turn{len(folded)} " in body and f"turn{len(folded) + 1} " not in body


def test_a_turn_too_long_for_the_window_is_cut_not_the_instructions() -> None:
    generator = FakeGenerator(context_window=300)
    turns = [turn(1, 5000), turn(2, 10)]
    prompt, folded = fitted(generator, None, turns, "Sol")
    assert folded == turns[:1]
    assert prompt[0].content == INSTRUCTIONS
    assert "Ana: turn1 word" in prompt[1].content
    assert 250 <= generator.count_tokens(prompt) + PARAMS.max_new_tokens <= 300
