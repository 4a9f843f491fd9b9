"""A plugin used by the API tests: every kind of declaration, and two that misbehave."""

from __future__ import annotations

import asyncio
from typing import Literal

from pydantic import BaseModel

from core.plugins import STOP, Context, JobContext, Outcome, Plugin, Rest, matchers


class SampleSettings(BaseModel):
    greeting: str = "Hello"
    loud: bool = False


plugin = Plugin("sample", description="Exercises the plugin API.", settings=SampleSettings)
events: list[str] = []


@plugin.setup
async def started(ctx: JobContext) -> None:
    events.append("setup")


@plugin.teardown
async def stopped(ctx: JobContext) -> None:
    events.append("teardown")


@plugin.command(help="greet someone a few times")
async def greet(
    ctx: Context, name: str, times: int = 1, style: Literal["plain", "fancy"] = "plain"
) -> str:
    settings: SampleSettings = ctx.settings
    words = " ".join([f"{settings.greeting}, {name}!"] * times)
    words = f"✨ {words} ✨" if style == "fancy" else words
    return words.upper() if settings.loud else words


@plugin.command(help="say something back")
async def echo(ctx: Context, text: Rest) -> str:
    return text


@plugin.command(help="weigh a number", rate="2/minute")
async def weigh(ctx: Context, kilos: float, exact: bool = False) -> str:
    return f"{kilos:.3f} kg" if exact else f"about {round(kilos)} kg"


@plugin.command(help="only for admins", admin=True)
async def secret(ctx: Context) -> str:
    return "the secret"


@plugin.command(help="raises")
async def broken(ctx: Context) -> str:
    raise RuntimeError("this plugin is broken")


@plugin.command(help="never finishes")
async def hang(ctx: Context) -> str:
    await asyncio.sleep(3600)
    return "never"


@plugin.command(help="counts your uses, in your own storage")
async def count(ctx: Context) -> str:
    seen = int(await ctx.storage.get("count", 0)) + 1
    await ctx.storage.set("count", seen)
    return f"{seen} so far"


@plugin.on_message(matchers.keyword("ping") & matchers.dm_only(), priority=5)
async def pong(ctx: Context) -> str:
    return "pong"


@plugin.on_message(matchers.regex(r"^shh\b"), priority=20)
async def hush(ctx: Context) -> Outcome:
    return STOP


@plugin.on_message(matchers.emotion("sadness"), priority=1)
async def comfort(ctx: Context) -> None:
    ctx.note("The person is sad: be gentle.")
    await ctx.react("🫂")


@plugin.on_message(matchers.keyword("explode"), priority=30)
async def explode(ctx: Context) -> str:
    raise ValueError("hook failure")


@plugin.on_message(matchers.keyword("stall"), priority=30)
async def stall(ctx: Context) -> str:
    await asyncio.sleep(3600)
    return "never"


@plugin.every(seconds=0.05)
async def tick(ctx: JobContext) -> None:
    ctx.state["ticks"] = ctx.state.get("ticks", 0) + 1
