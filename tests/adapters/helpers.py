"""What the platform tests share."""

from __future__ import annotations

import asyncio
from typing import Protocol

from adapters.base import PlatformAdapter


class HasAdapter(Protocol):
    @property
    def adapter(self) -> PlatformAdapter: ...


async def settled(running: HasAdapter, grace: float = 0.1) -> None:
    """Wait until events already received have reached the bot and every turn is done."""
    bot = running.adapter.bot
    assert bot is not None
    await asyncio.sleep(grace)
    await bot.idle()
