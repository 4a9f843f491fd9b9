"""Built-in plugin ``persona``: admins switch the bot's persona per channel, choosing from
the bot profiles available (the ``bots/`` folder). Everyone can see which one is on."""

from __future__ import annotations

from core.errors import ConfigError
from core.plugins import Context, Plugin
from core.settings import available_profiles, load_profile

plugin = Plugin("persona", description="Admins switch the persona per channel: /persona NAME.")

DEFAULT = "default"


def _names(ctx: Context) -> list[str]:
    return available_profiles(ctx.bots_dir)


def _persona_of(ctx: Context, name: str) -> str:
    cache: dict[str, str] = ctx.state.setdefault("personas", {})
    if name not in cache:
        cache[name] = load_profile(ctx.bots_dir, name).persona
    return cache[name]


@plugin.command("persona", help="this channel's persona, or switch it (admins): /persona NAME")
async def persona(ctx: Context, name: str = "") -> str:
    current = await ctx.channel_storage.get("profile") or DEFAULT
    choices = ", ".join([DEFAULT, *_names(ctx)])
    if not name:
        return f"Persona here: {current}. Available: {choices}."
    if not ctx.is_admin:
        return "Only an admin of this bot can switch the persona."
    if name == DEFAULT:
        await ctx.channel_storage.delete("profile")
        return f"Back to my usual self ({ctx.bot_name}) here."
    if name not in _names(ctx):
        return f"There is no profile called {name!r}. Available: {choices}."
    try:
        _persona_of(ctx, name)
    except ConfigError as error:
        return f"That profile cannot be used: {error}"
    await ctx.channel_storage.set("profile", name)
    return f"From now on I speak as {name} here. /persona default switches back."


@plugin.on_message(priority=90)
async def apply(ctx: Context) -> None:
    name = await ctx.channel_storage.get("profile")
    if name and name != DEFAULT:
        try:
            ctx.persona(_persona_of(ctx, name))
        except ConfigError:  # the profile was removed or broken since: keep the default
            return
