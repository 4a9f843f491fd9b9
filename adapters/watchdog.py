"""The adapter watchdog: a platform connection that goes silent is noticed and restarted.

The worst failure of a chat bot is the quiet one: the process is up, the status says
connected, and no message arrives (a long poll stuck on a connection that a proxy or a
network dropped without closing it). Each adapter says how long it may go without a sign
of life (:attr:`~adapters.base.PlatformAdapter.quiet_limit_s`, under twice its heartbeat) and
whether it has one now (:attr:`~adapters.base.PlatformAdapter.connected`); the watchdog
looks every ``every`` seconds, logs the silence, restarts the connection (at most once
per limit), counts it (``socialbot_platform_restarts_total``) and logs when events come
in again. ``/readyz`` and ``socialbot_platform_connected`` show the same state meanwhile.
Libraries that watch their own heartbeat (discord.py's gateway, slack_sdk's Socket Mode
pings) reconnect by themselves; their adapters show the state and leave the restart to
them.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence

from adapters.base import PlatformAdapter

log = logging.getLogger(__name__)


class Watchdog:
    def __init__(self, adapters: Sequence[PlatformAdapter], *, every: float = 1.0) -> None:
        self.adapters = adapters
        self.every = every
        self._silent_since: dict[int, float] = {}
        self._restarted_at: dict[int, float] = {}
        self._restarting: dict[int, asyncio.Task[None]] = {}

    async def run(self) -> None:
        """Look until cancelled."""
        while True:
            await asyncio.sleep(self.every)
            self.look()

    def look(self) -> None:
        now = time.monotonic()
        for adapter in self.adapters:
            limit, key = adapter.quiet_limit_s, id(adapter)
            if limit is None or not adapter.accepting:
                continue
            if adapter.connected:
                if self._silent_since.pop(key, None) is not None:
                    log.warning("%s: receiving again", adapter.platform)
                continue
            self._silent_since.setdefault(key, now)
            if now - self._restarted_at.get(key, -limit) < limit:
                continue  # restarted lately: give it its time
            busy = self._restarting.get(key)
            if busy is not None and not busy.done():
                continue
            log.warning(
                "%s: no sign of life for over %g s; restarting the connection",
                adapter.platform,
                limit,
            )
            self._restarted_at[key] = now
            adapter.restarts += 1
            self._restarting[key] = asyncio.get_running_loop().create_task(self._restart(adapter))

    async def _restart(self, adapter: PlatformAdapter) -> None:
        try:
            await adapter.restart()
        except Exception:
            log.exception("%s: the restart failed; trying again later", adapter.platform)

    async def close(self) -> None:
        for task in self._restarting.values():
            task.cancel()
        await asyncio.gather(*self._restarting.values(), return_exceptions=True)
