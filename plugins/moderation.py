"""Built-in plugin ``moderation``: words the operator blocks, and a per-person flood
limit. A message caught by either is not answered or stored, and its author gets a
clear notice that only they see (a DM, or Slack's ephemeral message)."""

from __future__ import annotations

import re
import time
from collections import defaultdict, deque

from pydantic import BaseModel, Field

from core.plugins import STOP, Context, Outcome, Plugin


class ModerationSettings(BaseModel):
    blocked_words: list[str] = Field(default_factory=list)
    flood_messages: int = Field(default=8, ge=1, description="At most this many messages...")
    flood_seconds: float = Field(default=30.0, gt=0, description="...in this many seconds.")


plugin = Plugin(
    "moderation", description="Blocked words and a flood limit.", settings=ModerationSettings
)


def _blocked(settings: ModerationSettings) -> re.Pattern[str] | None:
    words = [w.strip() for w in settings.blocked_words if w.strip()]
    if not words:
        return None
    return re.compile(
        r"(?<!\w)(?:" + "|".join(re.escape(w) for w in words) + r")(?!\w)", re.IGNORECASE
    )


@plugin.on_message(priority=100)
async def moderate(ctx: Context) -> Outcome | None:
    settings: ModerationSettings = ctx.settings
    if "pattern" not in ctx.state:
        ctx.state["pattern"] = _blocked(settings)
    pattern: re.Pattern[str] | None = ctx.state["pattern"]
    if pattern is not None and pattern.search(ctx.text):
        await ctx.whisper(
            "I didn't pass on your message: it contains a word that this community's "
            "moderators have blocked."
        )
        return STOP
    recent: defaultdict[tuple[str, str], deque[float]] = ctx.state.setdefault(
        "recent", defaultdict(deque)
    )
    now = time.monotonic()
    times = recent[(ctx.place.platform, ctx.user_key)]
    while times and times[0] <= now - settings.flood_seconds:
        times.popleft()
    times.append(now)
    if len(times) > settings.flood_messages:
        if len(times) == settings.flood_messages + 1:  # say it once, not to every message
            await ctx.whisper(
                f"You're sending messages faster than I can answer ({settings.flood_messages} "
                f"in {settings.flood_seconds:g} s). I'll pick up again in a moment."
            )
        return STOP
    return None
