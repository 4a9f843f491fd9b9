"""The llama.cpp engine's plan for reusing a slot's cached prompt (no model needed)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from core.generation.llamacpp_engine import plan_reuse

PERSONA = list(range(100, 140))
OLD_TURNS = list(range(200, 260))  # the turns the window dropped
KEPT_TURNS = list(range(300, 380))
NOTE = list(range(400, 430))
LAST = list(range(500, 540))  # the last message and reply


def test_a_moved_note_costs_only_what_is_new() -> None:
    cached = [*PERSONA, *KEPT_TURNS, *NOTE, *LAST]
    new_note = list(range(600, 625))
    tokens = [*PERSONA, *KEPT_TURNS, *LAST, *new_note, 1, 2, 3]
    kept, moves = plan_reuse(cached, tokens, chunk=16)
    assert kept == len(PERSONA) + len(KEPT_TURNS) + len(LAST)
    assert moves == [(120, 150, 40)]  # the last exchange, moved back over the old note


def test_a_window_jump_keeps_the_turns_that_stay() -> None:
    cached = [*PERSONA, *OLD_TURNS, *KEPT_TURNS, *LAST]
    tokens = [*PERSONA, *KEPT_TURNS, *LAST, 7, 8, 9]
    kept, moves = plan_reuse(cached, tokens, chunk=16)
    assert kept == len(tokens) - 3
    assert moves == [(40, 100, 120)]  # kept turns and the last exchange in one run


def test_short_runs_and_chunk_zero_keep_the_prefix_only() -> None:
    cached = [*PERSONA, *NOTE, *LAST[:10]]
    tokens = [*PERSONA, *LAST[:10], 1]
    assert plan_reuse(cached, tokens, chunk=16) == (len(PERSONA), [])
    assert plan_reuse(cached, tokens, chunk=8) == (50, [(40, 70, 10)])
    assert plan_reuse([*PERSONA, *NOTE, *LAST], [*PERSONA, *LAST, 1], chunk=0) == (40, [])


def test_the_last_prompt_token_is_always_read() -> None:
    assert plan_reuse([1, 2, 3], [1, 2, 3], chunk=1) == (2, [])
    assert plan_reuse([9, 1, 2, 3], [1, 2, 3], chunk=1) == (2, [(0, 1, 2)])
    assert plan_reuse([], [5], chunk=1) == (0, [])


@given(
    st.lists(st.integers(0, 5), max_size=60),
    st.lists(st.integers(0, 5), min_size=1, max_size=60),
    st.integers(0, 6),
)
def test_a_plan_only_keeps_tokens_that_are_cached(
    cached: list[int], tokens: list[int], chunk: int
) -> None:
    kept, moves = plan_reuse(cached, tokens, chunk)
    assert kept < len(tokens)
    prefix = kept - sum(n for _, _, n in moves)
    assert cached[:prefix] == tokens[:prefix]
    to_next, from_next = prefix, prefix
    for to, start, n in moves:
        assert n >= max(chunk, 1)
        assert to == to_next and start >= from_next and start >= to  # in order, moving back
        assert cached[start : start + n] == tokens[to : to + n]
        to_next, from_next = to + n, start + n
    assert to_next == kept
