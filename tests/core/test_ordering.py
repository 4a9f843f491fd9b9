from __future__ import annotations

import asyncio
import functools

import pytest

from core.ordering import KeyedSerializer


async def test_same_key_runs_in_submission_order() -> None:
    order = KeyedSerializer()
    log: list[str] = []

    async def job(name: str, delay: float) -> str:
        log.append(f"start {name}")
        await asyncio.sleep(delay)
        log.append(f"end {name}")
        return name

    results = await asyncio.gather(
        order.run("a", lambda: job("1", 0.03)),
        order.run("a", lambda: job("2", 0.0)),
        order.run("a", lambda: job("3", 0.01)),
    )
    assert list(results) == ["1", "2", "3"]
    assert log == ["start 1", "end 1", "start 2", "end 2", "start 3", "end 3"]
    assert len(order) == 0


async def test_different_keys_overlap() -> None:
    order = KeyedSerializer()
    running = 0
    peak = 0

    async def job() -> None:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        await asyncio.sleep(0.02)
        running -= 1

    await asyncio.gather(*(order.run(k, job) for k in range(5)))
    assert peak == 5


async def test_an_error_reaches_its_caller_and_the_queue_goes_on() -> None:
    order = KeyedSerializer()

    async def bad() -> None:
        raise ValueError("nope")

    async def good() -> str:
        return "fine"

    outcome = await asyncio.gather(
        order.run("k", bad), order.run("k", good), return_exceptions=True
    )
    assert isinstance(outcome[0], ValueError) and outcome[1] == "fine"


async def test_drain_waits_for_queued_work() -> None:
    order = KeyedSerializer()
    done: list[int] = []

    async def job(i: int) -> None:
        await asyncio.sleep(0.01)
        done.append(i)

    tasks = [asyncio.create_task(order.run("k", functools.partial(job, i))) for i in range(3)]
    await asyncio.sleep(0)
    await order.drain()
    assert done == [0, 1, 2]
    await asyncio.gather(*tasks)


async def test_a_cancelled_waiter_does_not_block_the_key() -> None:
    order = KeyedSerializer()
    gate = asyncio.Event()

    async def slow() -> None:
        await gate.wait()

    first = asyncio.create_task(order.run("k", slow))
    second = asyncio.create_task(order.run("k", slow))
    await asyncio.sleep(0)
    second.cancel()
    gate.set()
    await first
    with pytest.raises(asyncio.CancelledError):
        await second
    assert await order.run("k", lambda: asyncio.sleep(0, "after")) == "after"
