from __future__ import annotations

import asyncio

from hypothesis import given, settings
from hypothesis import strategies as st

from adapters.base import EditingChannel, RecentIds, split_text
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


class Recording(EditingChannel[int]):
    limit = 50
    edit_every = 0.05
    typing_every = 0.02
    min_stream_chars = 5

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[tuple[str, str]] = []

    async def show_typing(self) -> None:
        self.calls.append(("typing", ""))

    async def post(self, text: str, *, first: bool) -> int:
        self.calls.append(("post" if first else "post-more", text))
        return len(self.calls)

    async def edit(self, handle: int, text: str) -> None:
        self.calls.append(("edit", text))

    async def react(self, emoji: str) -> None:
        self.calls.append(("react", emoji))


REPLY_PLACE = Place("test", "c", PlaceKind.DM)


async def test_editing_channel_types_streams_throttled_then_finishes() -> None:
    channel = Recording()
    await channel.typing()
    await asyncio.sleep(0.05)
    for word in "one two three four five six seven eight".split():
        await channel.stream(word + " ")
        await asyncio.sleep(0.02)
    final = "one two three four five six seven eight. " + "More text follows here, " * 3
    before = len(channel.calls)
    await channel.send(Reply(final.strip(), REPLY_PLACE, reaction="🎉"))
    finished = channel.calls[before:]
    kinds = [kind for kind, _ in channel.calls]
    assert kinds.count("typing") >= 2
    assert "typing" not in kinds[kinds.index("post") :]  # typing stops when text shows
    streamed = [text for kind, text in channel.calls if kind in ("post", "edit")][:-1]
    assert 1 <= len(streamed) < 8  # throttled: fewer updates than pieces
    assert [kind for kind, _ in finished] == ["edit", "post-more", "post-more", "react"]
    parts = [text for kind, text in finished[:-1]]
    assert all(len(p) <= 50 for p in parts)
    assert " ".join(parts).replace("  ", " ") == final.strip()
    assert channel.calls[-1] == ("react", "🎉")


async def test_a_failing_edit_does_not_lose_the_reply() -> None:
    class Broken(Recording):
        async def edit(self, handle: int, text: str) -> None:
            raise ConnectionError("message deleted")

    channel = Broken()
    await channel.stream("a streamed beginning")
    await asyncio.sleep(0.01)
    await channel.send(Reply("a streamed beginning, and the end.", REPLY_PLACE))
    assert channel.calls[-1] == ("post-more", "a streamed beginning, and the end.")
