"""Strict order within a conversation, concurrency across conversations.

Each key (a conversation) gets a FIFO queue and one worker task while it has
work; the worker ends when its queue is empty, so idle conversations cost
nothing. Jobs of different keys run concurrently.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Hashable
from typing import TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T")

Job = tuple[Callable[[], Awaitable[object]], "asyncio.Future[object]"]


class KeyedSerializer:
    """Run jobs one at a time per key, in submission order."""

    def __init__(self) -> None:
        self._queues: dict[Hashable, asyncio.Queue[Job]] = {}
        self._workers: set[asyncio.Task[None]] = set()

    def __len__(self) -> int:
        """How many keys have work queued or running."""
        return len(self._queues)

    async def run(self, key: Hashable, job: Callable[[], Awaitable[T]]) -> T:
        """Queue ``job`` behind earlier jobs of ``key`` and wait for its result."""
        return await self.submit(key, job)

    def submit(self, key: Hashable, job: Callable[[], Awaitable[T]]) -> asyncio.Future[T]:
        """Queue ``job`` behind earlier jobs of ``key`` now; the future is its result."""
        future: asyncio.Future[object] = asyncio.get_running_loop().create_future()
        queue = self._queues.get(key)
        if queue is None:
            queue = self._queues[key] = asyncio.Queue()
            worker = asyncio.create_task(self._work(key, queue), name=f"conversation {key}")
            self._workers.add(worker)
            worker.add_done_callback(self._workers.discard)
        queue.put_nowait((job, future))
        return future  # type: ignore[return-value]

    async def _work(self, key: Hashable, queue: asyncio.Queue[Job]) -> None:
        try:
            while not queue.empty():
                job, future = queue.get_nowait()
                if future.cancelled():
                    continue
                try:
                    result = await job()
                except asyncio.CancelledError:
                    if not future.done():
                        future.cancel()
                    raise
                except BaseException as error:  # the caller sees it; the queue goes on
                    if not future.done():
                        future.set_exception(error)
                else:
                    if not future.done():
                        future.set_result(result)
        finally:
            if self._queues.get(key) is queue:
                del self._queues[key]
            while not queue.empty():  # only when cancelled: fail what is left
                _, future = queue.get_nowait()
                future.cancel()

    async def drain(self) -> None:
        """Wait until every queued job has finished."""
        while self._workers:
            await asyncio.gather(*list(self._workers), return_exceptions=True)
