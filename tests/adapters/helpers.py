"""What the platform tests share."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

FUZZ = settings(
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
"""Hypothesis settings for fuzzing a running platform fake: each example goes through a
real server and the bot (slow, a fixture per test, no example database); a test adds its
number of examples: ``@settings(FUZZ, max_examples=20)``."""


def json_values(
    leaves: st.SearchStrategy[Any],
    keys: st.SearchStrategy[str],
    *,
    list_size: int,
    object_size: int,
    max_leaves: int,
) -> st.SearchStrategy[Any]:
    """Any JSON value made of ``leaves``, in lists and in objects keyed by ``keys``."""
    return st.recursive(
        leaves,
        lambda inner: (
            st.lists(inner, max_size=list_size) | st.dictionaries(keys, inner, max_size=object_size)
        ),
        max_leaves=max_leaves,
    )


def without_platform_env() -> dict[str, str]:
    """This process's environment without any socialbot or platform setting (so that a
    developer's tokens never reach a test or benchmark)."""
    return {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("SOCIALBOT_", "DISCORD_", "TELEGRAM_", "SLACK_"))
    }


@dataclass
class LoopbackServer:
    """What the fake platform servers share: an aiohttp app on 127.0.0.1 (a free port),
    and a condition that tests wait on until what they expect has arrived."""

    url: str = ""
    _changed: asyncio.Condition = field(default_factory=asyncio.Condition)
    _runner: web.AppRunner | None = None

    async def start(self) -> None:
        """Build the fake's app and :meth:`serve` it."""
        raise NotImplementedError

    async def serve(self, app: web.Application) -> None:
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", 0).start()
        self.url = f"http://127.0.0.1:{self._runner.addresses[0][1]}"

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def wait(self, predicate: Callable[[], bool], within: float = 10.0) -> None:
        """Wait until ``predicate()`` holds (checked whenever the server records something)."""

        async def enough() -> None:
            async with self._changed:
                await self._changed.wait_for(predicate)

        await asyncio.wait_for(enough(), within)

    async def _notify(self) -> None:
        async with self._changed:
            self._changed.notify_all()
