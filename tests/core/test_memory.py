from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import numpy as np
import pytest

from core import testing
from core.bot import Bot
from core.memory.longterm import FakeEmbedder, LongTermMemory, worth_remembering
from core.privacy import Privacy
from core.storage.store import Store
from core.testing import message
from core.types import Role


@pytest.fixture
async def store(tmp_path: Path, privacy: Privacy) -> AsyncIterator[Store]:
    opened = await Store.open(tmp_path / "m.db", privacy)
    yield opened
    await opened.close()


async def test_memories_added_after_a_scope_is_loaded_reach_exactly_the_scopes_that_may_see_them(
    store: Store, privacy: Privacy
) -> None:
    memory = LongTermMemory(store, FakeEmbedder())
    alice_dm = privacy.scope(message("", user="alice"))
    bob_dm = privacy.scope(message("", user="bob"))
    general = privacy.scope(message("", user="bob", channel="general"))
    query = (await memory.embedder.embed(["tea"]))[0]
    for scope in (alice_dm, bob_dm, general):  # loaded (empty) before anything is added
        assert await memory.search(scope, query) == []

    said = [f"tea number {n}" for n in range(40)]  # past the index's first growth
    vectors = await memory.embedder.embed(said)
    for text, vector in zip(said, vectors, strict=True):
        await memory.add(message(text, user="alice", channel="general"), text, vector, turn_id=None)
    secret = "tea in private"
    await memory.add(
        message(secret, user="alice"),
        secret,
        (await memory.embedder.embed([secret]))[0],
        turn_id=None,
    )

    def texts(found: list) -> set[str]:  # type: ignore[type-arg]
        return {m.text for m in found}

    assert texts(await memory.search(alice_dm, query, k=100)) == {*said, secret}
    assert texts(await memory.search(general, query, k=100)) == set(said)
    assert await memory.search(bob_dm, query, k=100) == []
    memory.invalidate()  # the same answers from the database
    assert texts(await memory.search(alice_dm, query, k=100)) == {*said, secret}
    assert texts(await memory.search(general, query, k=100)) == set(said)


async def test_a_memory_whose_turn_is_rolled_back_leaves_the_index(
    store: Store, privacy: Privacy
) -> None:
    """add() indexes a row before its transaction commits; if the transaction rolls back,
    the row's id is free again, and the index must not keep the old vector under it."""
    memory = LongTermMemory(store, FakeEmbedder())
    scope = privacy.scope(message("", user="alice"))
    cats, taxes = await memory.embedder.embed(["cats purr softly", "quarterly taxes due"])
    assert float(cats @ taxes) < 0.5
    await memory.search(scope, cats)  # the scope's index is loaded
    with pytest.raises(RuntimeError):
        async with store.transaction():
            await memory.add(message("x", user="alice"), "cats purr softly", cats, turn_id=None)
            raise RuntimeError("the turn failed")
    await memory.add(message("y", user="alice"), "quarterly taxes due", taxes, turn_id=None)
    found = await memory.search(scope, cats, min_similarity=0.5)
    assert [m.text for m in found] == []
    assert np.isclose((await memory.search(scope, taxes))[0].similarity, 1.0)


def test_only_greetings_thanks_assent_and_laughter_are_not_worth_remembering() -> None:
    for text in ("hi!", "ok thanks", "haha yes", "Hehe", "lol ok", "😂", "Good morning!", "no"):
        assert not worth_remembering(text), text
    for text in ("I am vegan", "my cat is called Miso", "hi, I'm Ann", "Dad", "thanks for the tea"):
        assert worth_remembering(text), text


async def test_the_pipeline_keeps_no_memory_of_small_talk(bot: Bot) -> None:
    for text in ("hi!", "my cat is called Miso", "haha ok"):
        await testing.say(bot, text)
    rows = await bot.store.rows("SELECT text FROM memories ORDER BY id", ())
    assert [r[0] for r in rows] == ["my cat is called Miso"]
    turns = await testing.history(bot, testing.message(""))
    assert [t.text for t in turns if t.role is Role.USER] == [
        "hi!",
        "my cat is called Miso",
        "haha ok",
    ]
