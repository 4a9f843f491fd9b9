"""A plugin whose commands clash: /status is the core's own, /help the help plugin's."""

from __future__ import annotations

from core.plugins import Context, Plugin

plugin = Plugin("clashing")


@plugin.command("status", help="not the core's")
async def status(ctx: Context) -> str:
    return "the plugin's status"


@plugin.command("help", help="not the help plugin's")
async def help_(ctx: Context) -> str:
    return "the plugin's help"
