"""Built-in plugin ``help``: the commands there are, with their usage, read from the
bot's one command table (the core's own commands and every running plugin's)."""

from __future__ import annotations

from core.plugins import Context, Plugin

plugin = Plugin("help", description="/help lists the commands and how to use them.")


@plugin.command("help", help="what I can do, or how to use one command")
async def help_(ctx: Context, command: str = "") -> str:
    available = ctx.commands  # from the one command table: the core's and every plugin's
    if command:
        wanted = command.lstrip("/").lower()
        found = next((c for c in available if c.name == wanted), None)
        if found is None:
            return f"I don't know /{wanted}. /help lists what I can do."
        return f"{found.usage}\n{found.help}" if found.help else found.usage
    lines = [f"I'm {ctx.bot_name}. Talk to me in plain words, or use a command:"]
    lines += [f"  {c.usage} - {c.help}" if c.help else f"  {c.usage}" for c in available]
    return "\n".join(lines)
