"""Built-in plugin ``reminders``: "remind me in 2 hours to call mum", or ``/remind 2h call
mum``. Reminders are kept in the database (they survive restarts), delivered on the
platform and in the place where they were asked, listed by ``/reminders``, and erased
with everything else by ``/forget``. Nothing is kept for someone who opted out.
"""

from __future__ import annotations

import logging
import re
import time
import uuid
from datetime import UTC, datetime

from pydantic import BaseModel, Field

from core.plugins import Context, JobContext, Plugin, Rest, matchers
from core.types import Place, PlaceKind

log = logging.getLogger(__name__)


class ReminderSettings(BaseModel):
    max_per_person: int = Field(default=25, ge=1)
    longest_days: float = Field(default=366, gt=0)


plugin = Plugin(
    "reminders", description="Reminders: /remind 2h call mum.", settings=ReminderSettings
)

_UNITS = {
    "s": 1,
    "sec": 1,
    "secs": 1,
    "second": 1,
    "seconds": 1,
    "m": 60,
    "min": 60,
    "mins": 60,
    "minute": 60,
    "minutes": 60,
    "h": 3600,
    "hr": 3600,
    "hrs": 3600,
    "hour": 3600,
    "hours": 3600,
    "d": 86400,
    "day": 86400,
    "days": 86400,
    "w": 604800,
    "week": 604800,
    "weeks": 604800,
}
_NUMBERS = {
    "a": 1,
    "an": 1,
    "one": 1,
    "two": 2,
    "three": 3,
    "four": 4,
    "five": 5,
    "ten": 10,
    "fifteen": 15,
    "twenty": 20,
    "thirty": 30,
    "half an": 0.5,
}
_AMOUNT = r"(?P<amount>\d+(?:\.\d+)?|half an|an?|one|two|three|four|five|ten|fifteen|twenty|thirty)"
_UNIT = r"(?P<unit>" + "|".join(sorted(_UNITS, key=len, reverse=True)) + r")"
DELAY = re.compile(rf"^{_AMOUNT}\s*{_UNIT}$", re.IGNORECASE)
NATURAL = (
    rf"^\s*(?:please\s+)?remind me\s+(?:in\s+)?{_AMOUNT}\s*{_UNIT}\s+"
    r"(?:to\s+|that\s+|about\s+|of\s+)?(?P<what>.+?)\s*[.!]?\s*$"
)


def parse_delay(text: str) -> float | None:
    """Seconds for "2h", "30 min", "an hour", "1.5 days"; None when it is not a delay."""
    match = DELAY.match(text.strip())
    if match is None:
        return None
    return _amount(match.group("amount")) * _UNITS[match.group("unit").lower()]


def _amount(text: str) -> float:
    lowered = text.lower()
    return float(_NUMBERS[lowered]) if lowered in _NUMBERS else float(lowered)


def _when(seconds: float) -> str:
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds >= size:
            count = round(seconds / size, 1)
            shown = f"{count:g}"
            return f"{shown} {unit}{'' if shown == '1' else 's'}"
    return f"{seconds:.0f} second{'' if round(seconds) == 1 else 's'}"


async def _add(ctx: Context, delay: float, what: str) -> str:
    settings: ReminderSettings = ctx.settings
    if not ctx.keeps:
        return "You're opted out, so I keep nothing for you, reminders included. /optin to undo."
    if delay <= 0 or delay > settings.longest_days * 86400:
        return f"I can remind you from a second to {settings.longest_days:g} days ahead."
    if len(await ctx.storage.items("r:")) >= settings.max_per_person:
        return f"You already have {settings.max_per_person} reminders waiting; that's my limit."
    place = ctx.place
    due = time.time() + delay
    await ctx.storage.set(
        f"r:{uuid.uuid4().hex}",
        {
            "what": what,
            "name": ctx.message.speaker.display_name or ctx.message.speaker.user_id,
            "place": {
                "platform": place.platform,
                "channel": place.channel,
                "kind": place.kind.value,
                "workspace": place.workspace,
                "thread": place.thread,
            },
        },
        due_at=due,
    )
    return f"OK, I'll remind you in {_when(delay)}: {what}"


@plugin.command("remind", help="remind you later, e.g. /remind 2h call mum")
async def remind(ctx: Context, when: str, what: Rest) -> str:
    delay = parse_delay(when)
    if delay is None:
        return "When should I remind you? Like 10m, 2h or 3d: /remind 2h call mum"
    return await _add(ctx, delay, what)


@plugin.on_message(matchers.regex(NATURAL), priority=40)
async def remind_in_words(ctx: Context) -> str:
    assert ctx.match is not None
    unit = _UNITS[ctx.match.group("unit").lower()]
    return await _add(ctx, _amount(ctx.match.group("amount")) * unit, ctx.match.group("what"))


@plugin.command("reminders", help="your reminders that are still to come")
async def reminders(ctx: Context) -> str:
    waiting = sorted(await ctx.storage.items("r:"), key=lambda e: e.due_at or 0)
    if not waiting:
        return "You have no reminders waiting."
    lines = ["Your reminders:"]
    for entry in waiting:
        at = datetime.fromtimestamp(entry.due_at or 0, UTC).strftime("%Y-%m-%d %H:%M UTC")
        lines.append(f"- {at}: {entry.value['what']}")
    return "\n".join(lines)


@plugin.every(seconds=2)
async def deliver(ctx: JobContext) -> None:
    for entry in await ctx.storage.due():
        where = entry.value["place"]
        place = Place(
            where["platform"],
            where["channel"],
            PlaceKind(where["kind"]),
            where["workspace"],
            where["thread"],
        )
        text = f"⏰ Reminder for {entry.value['name']}: {entry.value['what']}"
        if await ctx.send_to(place, text):
            await ctx.storage.remove(entry.id)
        # else its platform is not running now: it is delivered when it is again
