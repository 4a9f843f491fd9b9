from __future__ import annotations

import asyncio
import time
from types import SimpleNamespace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from adapters import base
from adapters.base import EditingChannel, RecentIds, split_text
from core.storage.inbox import Shown
from core.types import Place, PlaceKind, Reply


def _fences_balanced(part: str) -> bool:
    return sum(1 for line in part.splitlines() if line.strip().startswith("```")) % 2 == 0


def test_short_text_is_one_message() -> None:
    assert split_text("  hello  ", 2000) == ["hello"]


def test_paragraph_boundaries_are_preferred() -> None:
    one, two = "a" * 60 + ".", "b" * 60 + "."
    assert split_text(f"{one}\n\n{two}", 100) == [one, two]


def test_sentence_boundaries_come_before_words() -> None:
    text = "This is the first sentence. " * 3 + "And here is a much longer one that goes on"
    parts = split_text(text, 100)
    assert parts[0].endswith(".") and all(len(p) <= 100 for p in parts)


def test_code_blocks_are_moved_whole_when_they_fit() -> None:
    code = "```python\n" + "\n".join(f"x{i} = {i}" for i in range(8)) + "\n```"
    text = "Here is the code you asked for, with a short intro. " + code
    parts = split_text(text, 100)
    assert parts[-1] == code  # not cut at the word break inside the block


def test_a_code_block_longer_than_the_limit_is_closed_and_reopened() -> None:
    code = "```py\n" + "\n".join(f"value_{i} = {i} * {i}" for i in range(40)) + "\n```"
    parts = split_text(code, 200)
    assert len(parts) > 1
    for part in parts:
        assert len(part) <= 200 and _fences_balanced(part)
        assert part.startswith("```py")


words = st.sampled_from(["word", "longer-word", "x", "Sentence.", "end!", "\n", "\n\n", "```"])


@settings(max_examples=300, deadline=None)
@given(st.lists(words, max_size=400), st.integers(min_value=16, max_value=300))
def test_no_part_is_over_the_limit_and_no_text_is_lost(pieces: list[str], limit: int) -> None:
    text = " ".join(pieces)
    parts = split_text(text, limit)
    assert all(0 < len(p) <= limit for p in parts)
    squeeze = "".join(text.split())
    joined = "".join("".join(parts).split())
    # Only fence lines may have been added (to close and reopen a cut code block).
    assert joined.replace("```", "") == squeeze.replace("```", "")


def test_recent_ids_drop_repeats_and_forget_the_oldest() -> None:
    seen = RecentIds(size=2)
    assert seen.first_time("a") and seen.first_time("b")
    assert not seen.first_time("a")
    assert seen.first_time("c")  # "b" is now the oldest and is forgotten
    assert seen.first_time("b")
    assert seen.first_time("") and seen.first_time("")


class Clock:
    """``time.monotonic`` for :mod:`adapters.base`, moved on by the test."""

    def __init__(self, now: float = 100.0) -> None:
        self.now = now

    def monotonic(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    """Stream throttling runs on this clock (typing repeats on the event loop's)."""
    fake = Clock()
    monkeypatch.setattr(base, "time", SimpleNamespace(monotonic=fake.monotonic, time=time.time))
    return fake


class Recording(EditingChannel[int]):
    limit = 50
    edit_every = 1.0  # on the test's clock
    typing_every = 0.001  # real time: typing repeats at once
    min_stream_chars = 5

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[tuple[str, str]] = []
        self._changed = asyncio.Condition()

    async def _record(self, kind: str, text: str) -> None:
        self.calls.append((kind, text))
        async with self._changed:
            self._changed.notify_all()

    async def wait_for(self, call: tuple[str, str] | str, count: int = 1) -> None:
        """Wait until ``call`` (or a call of that kind) was made ``count`` times."""

        def made() -> int:
            if isinstance(call, str):
                return sum(1 for kind, _ in self.calls if kind == call)
            return self.calls.count(call)

        async def enough() -> None:
            async with self._changed:
                await self._changed.wait_for(lambda: made() >= count)

        await asyncio.wait_for(enough(), 5.0)

    async def show_typing(self) -> None:
        await self._record("typing", "")

    async def post(self, text: str, *, first: bool) -> int:
        await self._record("post" if first else "post-more", text)
        return len(self.calls)

    async def edit(self, handle: int, text: str) -> None:
        await self._record("edit", text)

    async def react(self, emoji: str) -> None:
        await self._record("react", emoji)


REPLY_PLACE = Place("test", "c", PlaceKind.DM)


async def test_editing_channel_types_streams_throttled_then_finishes(clock: Clock) -> None:
    channel = Recording()

    async def piece(word: str, at: float) -> None:
        clock.now = at
        await channel.stream(word + " ")

    await channel.typing()
    await channel.wait_for("typing", 2)  # repeated until the text shows
    await piece("one", 100.0)  # too short to show
    await piece("two", 100.0)  # shown: the first message
    await channel.wait_for(("post", "one two"))
    await piece("three", 100.5)  # less than edit_every since the last update: held back
    await piece("four", 100.9)
    await piece("five", 101.0)  # edit_every later: shown, with all that was held back
    await channel.wait_for(("edit", "one two three four five"))
    for word, at in (("six", 101.3), ("seven", 101.6), ("eight.", 101.9)):
        await piece(word, at)
    final = "one two three four five six seven eight. " + "More text follows here, " * 3
    before = len(channel.calls)
    await channel.send(Reply(final.strip(), REPLY_PLACE, reaction="🎉"))
    finished = channel.calls[before:]
    kinds = [kind for kind, _ in channel.calls]
    assert kinds.count("typing") >= 2
    assert "typing" not in kinds[kinds.index("post") :]  # typing stops when text shows
    streamed = [text for kind, text in channel.calls[:before] if kind in ("post", "edit")]
    assert streamed == ["one two", "one two three four five"]  # throttled: 2 updates, 8 pieces
    assert [kind for kind, _ in finished] == ["edit", "post-more", "post-more", "react"]
    parts = [text for kind, text in finished[:-1]]
    assert all(len(p) <= 50 for p in parts)
    assert " ".join(parts).replace("  ", " ") == final.strip()
    assert channel.calls[-1] == ("react", "🎉")


async def test_a_streamed_reply_is_kept_on_record_and_finished_after_a_restart(
    clock: Clock,
) -> None:
    channel = Recording()
    kept: list[tuple[str, str]] = []

    async def record(message_id: str, text: str) -> None:
        kept.append((message_id, text))

    channel.keep_shown(record)
    await channel.stream("a reply half way")
    await channel.wait_for(("post", "a reply half way"))
    # on record before it is posted (no id yet), then the message's id and the text it
    # shows: what a crash now leaves
    assert kept == [("", "a reply half way"), ("1", "a reply half way")]
    # after the restart, the same message is edited to the whole reply, not posted again
    again = Recording()
    again.handle_from_id = lambda message_id: int(message_id)  # type: ignore[method-assign]
    again.resume(Shown(*kept[-1]))
    await again.send(Reply("a reply half way, and finished.", REPLY_PLACE))
    assert again.calls == [("edit", "a reply half way, and finished.")]
    # a platform that cannot edit by id posts the reply anew
    plain = Recording()
    plain.resume(Shown(*kept[-1]))
    await plain.send(Reply("the whole reply.", REPLY_PLACE))
    assert plain.calls == [("post", "the whole reply.")]


async def test_a_failing_edit_does_not_lose_the_reply(clock: Clock) -> None:
    class Broken(Recording):
        async def edit(self, handle: int, text: str) -> None:
            raise ConnectionError("message deleted")

    channel = Broken()
    await channel.stream("a streamed beginning")
    await channel.wait_for(("post", "a streamed beginning"))
    await channel.send(Reply("a streamed beginning, and the end.", REPLY_PLACE))
    assert channel.calls == [
        ("post", "a streamed beginning"),
        ("post-more", "a streamed beginning, and the end."),  # the edit failed: sent anew
    ]
