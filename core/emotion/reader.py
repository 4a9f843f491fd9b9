"""What the pipeline needs from an emotion classifier, and batching of concurrent reads."""

from __future__ import annotations

import abc
import asyncio
import logging
import re
from collections.abc import Sequence
from typing import ClassVar

from core.emotion.labels import LABELS, Reading, reading_from

log = logging.getLogger(__name__)


class EmotionReader(abc.ABC):
    async def start(self) -> None:  # noqa: B027 - optional hook
        """Load the model."""

    async def close(self) -> None:  # noqa: B027 - optional hook
        """Release the model."""

    @abc.abstractmethod
    async def read(self, texts: Sequence[str]) -> list[Reading]:
        """One reading per text."""


class Batcher:
    """Reads one text at a time for its caller, but classifies concurrent texts together.

    Texts that arrive while a batch is running (or in the same loop tick) wait for
    the next batch: with many conversations at once, one forward pass serves many.
    """

    def __init__(self, reader: EmotionReader, *, max_batch: int = 64) -> None:
        self.reader = reader
        self.max_batch = max_batch
        self._pending: list[tuple[str, asyncio.Future[Reading]]] = []
        self._worker: asyncio.Task[None] | None = None
        self.batches: list[int] = []
        """Sizes of the batches run so far (for tests and benchmarks)."""

    @property
    def pending(self) -> int:
        """Texts waiting for the next batch."""
        return len(self._pending)

    async def read_one(self, text: str) -> Reading:
        future: asyncio.Future[Reading] = asyncio.get_running_loop().create_future()
        self._pending.append((text, future))
        if self._worker is None or self._worker.done():
            self._worker = asyncio.create_task(self._drain())
        return await future

    async def _drain(self) -> None:
        await asyncio.sleep(0)  # let callers in the same tick join this batch
        while self._pending:
            batch, self._pending = (
                self._pending[: self.max_batch],
                self._pending[self.max_batch :],
            )
            self.batches.append(len(batch))
            try:
                readings = await self.reader.read([text for text, _ in batch])
            except Exception as error:
                if len(batch) == 1:
                    if not batch[0][1].done():
                        batch[0][1].set_exception(error)
                    continue
                # one text must not fail everyone's: read them one by one, so that only
                # a text that cannot be read fails (and only its own turn)
                log.warning("a batch of %d texts failed; reading them one by one", len(batch))
                for text, future in batch:
                    await self._read_alone(text, future)
                continue
            for (_, future), reading in zip(batch, readings, strict=True):
                if not future.done():
                    future.set_result(reading)

    async def _read_alone(self, text: str, future: asyncio.Future[Reading]) -> None:
        try:
            (reading,) = await self.reader.read([text])
        except Exception as error:
            if not future.done():
                future.set_exception(error)
        else:
            if not future.done():
                future.set_result(reading)


class FakeEmotionReader(EmotionReader):
    """Keywords to labels, for tests: 'sad' reads as sadness, 'great' as joy, and so on."""

    KEYWORDS: ClassVar[dict[str, str]] = {
        "sad": "sadness",
        "awful": "sadness",
        "cry": "sadness",
        "lonely": "sadness",
        "scared": "fear",
        "afraid": "fear",
        "worried": "nervousness",
        "angry": "anger",
        "furious": "anger",
        "annoying": "annoyance",
        "happy": "joy",
        "great": "joy",
        "love": "love",
        "thanks": "gratitude",
        "wow": "surprise",
        "gross": "disgust",
    }

    def __init__(self) -> None:
        self.calls: list[list[str]] = []

    async def read(self, texts: Sequence[str]) -> list[Reading]:
        self.calls.append(list(texts))
        return [self._one(text) for text in texts]

    def _one(self, text: str) -> Reading:
        found = {
            self.KEYWORDS[w] for w in re.findall(r"[a-z]+", text.lower()) if w in self.KEYWORDS
        }
        probabilities = [0.9 if name in found else 0.02 for name in LABELS]
        if not found:
            probabilities[LABELS.index("neutral")] = 0.9
        return reading_from(probabilities, [0.5] * len(LABELS))
