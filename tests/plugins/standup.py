"""The plugin that docs/plugins.md builds, step by step (kept here so that its code is
tested exactly as the tutorial shows it)."""

from __future__ import annotations

from datetime import UTC, datetime

from pydantic import BaseModel

from core.plugins import Context, Plugin, Rest
from core.plugins import matchers as m


class StandupSettings(BaseModel):
    title: str = "Today's standup"


plugin = Plugin(
    "standup", description="Post and read the day's standup notes.", settings=StandupSettings
)


def today() -> str:
    return datetime.now(UTC).date().isoformat()


@plugin.command(help="post what you are working on today")
async def standup(ctx: Context, note: Rest) -> str:
    name = ctx.message.speaker.display_name
    await ctx.storage.set(f"note:{today()}", {"name": name, "note": note})
    return "Noted. /standups shows everyone's."


@plugin.command(help="today's standup notes in this channel")
async def standups(ctx: Context) -> str:
    posted = await ctx.storage.items(f"note:{today()}", everyone=True)
    if not posted:
        return "Nobody has posted yet today."
    settings: StandupSettings = ctx.settings
    lines = [f"- {e.value['name']}: {e.value['note']}" for e in posted]
    return "\n".join([settings.title + ":", *lines])


@plugin.on_message(m.regex(r"\bblocked\b") & m.group_only(), priority=5)
async def blocked(ctx: Context) -> None:
    await ctx.react("🚧")  # where the platform has reactions
    ctx.note("The person is blocked on something: ask what would help.")  # to the model
    return None  # the model still answers
