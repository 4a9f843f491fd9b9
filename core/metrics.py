"""Prometheus metrics of one bot (prometheus-client), in a registry of its own.

What a turn did is observed once it ends (:meth:`Metrics.turn_ended`): how it ended, per
platform; each stage's time; the time to the model's first streamed piece and to the
end. Gauges are read when scraped: conversations in progress, and the process (CPU,
memory, open files). Platform adapters add their own (events, last event, malformed)
where the metrics are served (``adapters/ops.py``). Labels never carry a person, a
place or anything said: only platforms, stages, outcomes and emotion groups.
"""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    ProcessCollector,
    generate_latest,
)
from prometheus_client.registry import Collector

from core.turn import Turn

STAGE_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
REPLY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2, 4, 8, 15, 30, 60, 120)

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
"""The exposition format's media type."""


class Metrics:
    """The bot's metrics; :meth:`exposition` is what ``/metrics`` serves."""

    def __init__(self, busy: Callable[[], int]) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.turns = Counter(
            "socialbot_turns",
            "Turns, by platform and how they ended (model, model_failed, command, refused,"
            " unanswered, error).",
            ["platform", "outcome"],
            registry=r,
        )
        self.stages = Histogram(
            "socialbot_stage_seconds",
            "Time in each stage of a turn.",
            ["stage"],
            buckets=STAGE_BUCKETS,
            registry=r,
        )
        self.first_piece = Histogram(
            "socialbot_first_piece_seconds",
            "From a message being handed in to the model's first streamed piece of the reply.",
            buckets=REPLY_BUCKETS,
            registry=r,
        )
        self.replies = Histogram(
            "socialbot_reply_seconds",
            "From a message being handed in to its answer sent (turns the model answered).",
            buckets=REPLY_BUCKETS,
            registry=r,
        )
        self.emotions = Counter(
            "socialbot_emotions",
            "Emotions read in messages, by Ekman group.",
            ["ekman"],
            registry=r,
        )
        busy_gauge = Gauge(
            "socialbot_conversations_busy",
            "Conversations with a turn queued or running.",
            registry=r,
        )
        busy_gauge.set_function(busy)
        ProcessCollector(registry=r)

    def turn_ended(self, turn: Turn, seconds: float) -> None:
        platform = turn.message.place.platform
        self.turns.labels(platform, turn.outcome or "unanswered").inc()
        for stage, spent in turn.timings.items():
            self.stages.labels(stage).observe(spent)
        if turn.first_piece_s is not None:
            self.first_piece.observe(turn.first_piece_s)
        if turn.outcome in ("model", "model_failed"):
            self.replies.observe(seconds)
        if turn.emotion is not None:
            self.emotions.labels(turn.emotion.ekman).inc()

    def add(self, collector: Collector) -> None:
        """Collect ``collector``'s metrics too (an adapter's, ...)."""
        self.registry.register(collector)

    def exposition(self) -> bytes:
        """Every metric in Prometheus' text format."""
        return generate_latest(self.registry)
