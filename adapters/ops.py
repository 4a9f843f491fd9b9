"""What an operator's tools read: ``/metrics`` (Prometheus' text format), ``/healthz``
(the process lives and its event loop answers) and ``/readyz`` (ready to answer: the
database takes a write, and every platform is connected and taking events in), on a port
of their own (``SOCIALBOT_OPS_PORT``; off unless set).

Nothing served here names a person or a place or holds anything anyone said: counts,
timings, platforms, stages, outcomes.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator, Sequence
from typing import Protocol

from aiohttp import web
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from adapters.base import PlatformAdapter, bound_port
from core.metrics import CONTENT_TYPE, Metrics
from core.settings import Settings


class Operated(Protocol):
    """What the endpoints read of the bot (:class:`core.bot.Bot` is one)."""

    metrics: Metrics

    async def check(self) -> dict[str, str]: ...


class PlatformCollector(Collector):
    """Each platform's connection, as its adapter counts it."""

    def __init__(self, adapters: Sequence[PlatformAdapter]) -> None:
        self.adapters = adapters

    def collect(self) -> Iterable[CounterMetricFamily | GaugeMetricFamily]:
        events = CounterMetricFamily(
            "socialbot_platform_events",
            "Events received from each platform (repeats and ones that are not messages too).",
            labels=["platform"],
        )
        malformed = CounterMetricFamily(
            "socialbot_platform_malformed",
            "Events skipped because they could not be read.",
            labels=["platform"],
        )
        last = GaugeMetricFamily(
            "socialbot_platform_last_event_timestamp_seconds",
            "When the last event was received from each platform (Unix time).",
            labels=["platform"],
        )
        restarts = CounterMetricFamily(
            "socialbot_platform_restarts",
            "Times the watchdog restarted a connection that had gone silent.",
            labels=["platform"],
        )
        connected = GaugeMetricFamily(
            "socialbot_platform_connected",
            "1 while connected to the platform and taking events in.",
            labels=["platform"],
        )
        for adapter in self.adapters:
            name = adapter.platform
            events.add_metric([name], adapter.events)
            malformed.add_metric([name], adapter.malformed)
            restarts.add_metric([name], adapter.restarts)
            if adapter.last_event_at is not None:
                last.add_metric([name], adapter.last_event_at)
            connected.add_metric([name], 1.0 if adapter.connected else 0.0)
        yield from (events, malformed, restarts, last, connected)

    def describe(self) -> Iterator[CounterMetricFamily | GaugeMetricFamily]:
        return iter(())  # read at each scrape, never at registration


class OpsServer:
    """The endpoints, served by aiohttp beside the bot."""

    def __init__(
        self, bot: Operated, adapters: Sequence[PlatformAdapter], settings: Settings
    ) -> None:
        self.bot = bot
        self.adapters = adapters
        self.settings = settings
        self.port = 0
        self.started = time.monotonic()
        self._runner: web.AppRunner | None = None
        bot.metrics.add(PlatformCollector(adapters))

    @property
    def url(self) -> str:
        return f"http://{self.settings.ops_host}:{self.port}"

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/metrics", self._metrics)
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/readyz", self._readyz)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.settings.ops_host, self.settings.ops_port or 0)
        await site.start()
        self.port = bound_port(site)

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def _metrics(self, request: web.Request) -> web.Response:
        return web.Response(
            body=self.bot.metrics.exposition(), headers={"Content-Type": CONTENT_TYPE}
        )

    async def _healthz(self, request: web.Request) -> web.Response:
        return web.json_response({"alive": True, "up_s": round(time.monotonic() - self.started)})

    async def _readyz(self, request: web.Request) -> web.Response:
        checks = await self.bot.check()
        for adapter in self.adapters:
            checks[adapter.platform] = "ok" if adapter.connected else "not connected"
        ready = all(value == "ok" for value in checks.values())
        return web.json_response({"ready": ready, "checks": checks}, status=200 if ready else 503)
