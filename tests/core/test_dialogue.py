from __future__ import annotations

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core.errors import UserError
from core.generation.fake import FakeGenerator
from core.memory.window import REFILL, Prompt, Remembered, budget_for, build_context
from core.storage.store import StoredTurn
from core.types import Role


def history(*texts: str) -> list[StoredTurn]:
    """Alternating user/assistant turns, oldest first."""
    return [
        StoredTurn(i + 1, Role.USER if i % 2 == 0 else Role.ASSISTANT, "alice", "Alice", text, 0.0)
        for i, text in enumerate(texts)
    ]


GEN = FakeGenerator()  # one token per word, 4 tokens around each message, 4 to open the reply
LATE = FakeGenerator(late_system=True)  # takes a system message between turns


def test_everything_fits_when_the_budget_allows() -> None:
    turns = history("one two", "three", "four five six", "seven")
    context = build_context(GEN, persona="be kind", history=turns, incoming="new", budget=1000)
    assert [m.content for m in context.messages] == [
        "be kind",
        "one two",
        "three",
        "four five six",
        "seven",
        "new",
    ]
    assert context.turn_ids == (1, 2, 3, 4)
    assert context.tokens == GEN.count_tokens(context.messages)


def test_oldest_turns_are_dropped_whole_to_fit() -> None:
    turns = history("a " * 50, "b " * 50, "c c", "d d")
    persona_and_new = GEN.count_tokens(
        build_context(GEN, persona="p", history=[], incoming="n", budget=1000).messages
    )
    budget = persona_and_new + 2 * (2 + GEN.per_message_overhead) + 10
    context = build_context(GEN, persona="p", history=turns, incoming="n", budget=budget)
    assert context.turn_ids == (3, 4)
    assert context.tokens <= budget


def test_window_never_starts_with_the_bot() -> None:
    turns = history("x " * 40, "reply", "question", "answer")
    cost = GEN.count_tokens(
        build_context(GEN, persona="p", history=[], incoming="n", budget=1000).messages
    )
    # room for "reply", "question" and "answer" but not the first user turn
    budget = cost + 3 * (1 + GEN.per_message_overhead)
    context = build_context(GEN, persona="p", history=turns, incoming="n", budget=budget)
    assert context.turn_ids == (3, 4)
    assert context.messages[1].role is Role.USER


def test_a_message_too_big_for_the_budget_is_a_user_error() -> None:
    with pytest.raises(UserError, match="split it up"):
        build_context(GEN, persona="p", history=[], incoming="w " * 100, budget=50)


def test_group_lines_carry_the_speaker() -> None:
    context = build_context(
        GEN,
        persona="p",
        history=history("hi", "hello"),
        incoming="yo",
        budget=100,
        group=True,
        speaker_name="Bob",
    )
    assert [m.content for m in context.messages[1:]] == ["Alice: hi", "hello", "Bob: yo"]


def test_budget_leaves_room_for_the_reply() -> None:
    assert budget_for(FakeGenerator(context_window=1000), 2048, 200) == 800
    assert budget_for(FakeGenerator(context_window=8192), 2048, 200) == 2048


@settings(max_examples=200, deadline=None)
@given(
    texts=st.lists(st.text(alphabet="ab ", min_size=1, max_size=60), max_size=40),
    incoming=st.text(alphabet="ab ", min_size=1, max_size=40),
    budget=st.integers(min_value=20, max_value=400),
)
@pytest.mark.parametrize("gen", [GEN, LATE], ids=["note-in-persona", "late-note"])
def test_the_prompt_never_exceeds_the_budget(
    gen: FakeGenerator, texts: list[str], incoming: str, budget: int
) -> None:
    turns = history(*texts)
    try:
        context = build_context(
            gen, persona="be kind", history=turns, incoming=incoming, budget=budget
        )
    except UserError:
        assert (
            GEN.count_tokens(
                build_context(
                    GEN, persona="be kind", history=[], incoming=incoming, budget=10**6
                ).messages
            )
            > budget
        )
        return
    assert context.tokens <= budget
    assert context.tokens == GEN.count_tokens(context.messages)
    # a contiguous, most-recent run of whole turns, starting with a user turn
    ids = list(context.turn_ids)
    if ids:
        assert ids == list(range(ids[0], ids[-1] + 1))
        assert ids[-1] == len(turns)  # the newest turn is always kept when any is
        assert turns[ids[0] - 1].role is Role.USER
        kept = [m.content for m in context.messages[1:-1]]
        assert kept == [turns[i - 1].text for i in ids]


@settings(max_examples=200, deadline=None)
@given(
    texts=st.lists(st.text(alphabet="ab ", min_size=1, max_size=60), max_size=30),
    memories=st.lists(st.text(alphabet="cd ", min_size=1, max_size=80), max_size=10),
    summary=st.none() | st.text(alphabet="ef ", min_size=1, max_size=200),
    budget=st.integers(min_value=30, max_value=400),
    share=st.floats(min_value=0.0, max_value=0.9),
)
@pytest.mark.parametrize("gen", [GEN, LATE], ids=["note-in-persona", "late-note"])
def test_summary_and_memories_stay_within_the_budget(
    gen: FakeGenerator,
    texts: list[str],
    memories: list[str],
    summary: str | None,
    budget: int,
    share: float,
) -> None:
    offered = [Remembered(i, text) for i, text in enumerate(memories)]
    try:
        context = build_context(
            gen,
            persona="be kind",
            history=history(*texts),
            incoming="hi",
            budget=budget,
            summary=summary,
            memories=offered,
            memory_budget=int(budget * share),
        )
    except UserError:
        return
    assert context.tokens <= budget
    assert context.tokens == gen.count_tokens(context.messages)
    # memories kept are a prefix of the offered ones (most relevant first), whole
    kept = list(context.memory_ids)
    assert kept == list(range(len(kept)))
    system = "\n".join(m.content for m in context.messages if m.role is Role.SYSTEM)
    if gen.late_system:  # the start stays the same: the persona alone
        assert context.messages[0].content == "be kind"
    for i in kept:
        assert f'"{memories[i]}"' in system
    assert (summary is not None and f"conversation: {summary}" in system) == context.summary_used


def converse(
    gen: FakeGenerator,
    exchanges: int,
    budget: int,
    guidance: str = "",
    summaries: dict[int, str] | None = None,
) -> list[Prompt]:
    """Contexts of a conversation in which the bot answers every message (each reply
    stored with the window it saw and the summary it used, as the pipeline does);
    ``summaries`` says from which exchange on which summary is current."""
    turns: list[StoredTurn] = []
    contexts = []
    summary, summary_version = None, None
    for i in range(exchanges):
        if summaries and i in summaries:
            summary, summary_version = summaries[i], i
        text = f"message {i} " + "w " * (i % 5)
        context = build_context(
            gen,
            persona="be kind",
            history=turns,
            incoming=text,
            budget=budget,
            guidance=guidance,
            summary=summary,
            summary_version=summary_version,
            memory_budget=budget // 4,
        )
        contexts.append(context)
        n = len(turns)
        turns.append(StoredTurn(n + 1, Role.USER, "alice", "Alice", text, 0.0))
        reply = "reply " * (3 + i % 7)
        used = summary_version if context.summary_used else None
        turns.append(
            StoredTurn(
                n + 2, Role.ASSISTANT, "bot", "", reply, 0.0, context=context.turn_ids, summary=used
            )
        )
    return contexts


@pytest.mark.parametrize("gen", [GEN, LATE], ids=["note-in-persona", "late-note"])
def test_the_window_keeps_its_start_and_jumps_forward_in_chunks(gen: FakeGenerator) -> None:
    contexts = converse(gen, 120, budget=200)
    starts = [c.turn_ids[0] for c in contexts if c.turn_ids]
    assert starts == sorted(starts)  # it only ever moves forward
    jumps = [
        i
        for i in range(2, len(contexts))
        if contexts[i].turn_ids[:1] != contexts[i - 1].turn_ids[:1]
    ]
    # sliding one exchange at a time would move it on nearly every turn once full
    assert 5 <= len(jumps) <= len(contexts) // 3
    for i in jumps[1:]:  # after a jump the window holds about REFILL of the room
        used = sum(gen.count_message(m) for m in contexts[i].messages[1:-1])
        assert used <= REFILL * 200
    for c in contexts:
        assert c.tokens <= 200


def test_with_a_late_note_each_prompt_starts_with_the_one_before() -> None:
    """What changes every turn comes last, so an engine's cached prompt stays valid; a
    new summary joins at the end too, and stays where it joined."""
    summaries = {10: "They said hello.", 25: "They said hello and more.", 40: "Much more."}
    contexts = converse(LATE, 60, budget=200, guidance="Be gentle.", summaries=summaries)
    same_start = 0
    for i, (before, after) in enumerate(itertools.pairwise(contexts), 1):
        if before.turn_ids[:1] != after.turn_ids[:1] or not before.turn_ids:
            continue
        same_start += 1
        window = before.messages[:-2]  # all but the note and the new message
        if i in summaries:  # the old summary leaves (a cut, no new text); the new one is last
            assert after.messages[-3].content.endswith(summaries[i])
            window = tuple(m for m in window if not m.content.startswith("Summary of"))
        assert after.messages[: len(window)] == window
    assert same_start >= 30
    used = [c for c in contexts if c.summary_used]
    assert len(used) >= 40
    for context in used:
        assert context.messages[0].content == "be kind"
        assert sum("Summary of the earlier" in m.content for m in context.messages) == 1
    assert (
        contexts[10].messages[-3].content == "Summary of the earlier conversation: They said hello."
    )
    last = contexts[-1].messages
    assert last[0].content == "be kind"
    assert last[-2].role is Role.SYSTEM and last[-2].content == "Be gentle."
    assert last[-1].role is Role.USER
