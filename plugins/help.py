"""Built-in plugin ``help``: the commands there are, with their usage, generated from
what the plugins declare."""

from __future__ import annotations

from core.plugins import Context, Plugin

plugin = Plugin("help", description="/help lists the commands and how to use them.")


@plugin.command("help", help="what I can do, or how to use one command")
async def help_(ctx: Context, command: str = "") -> str:
    host = ctx.bot.plugins
    available = [c for c in host.commands() if not c.admin or ctx.is_admin]
    if command:
        wanted = command.lstrip("/").lower()
        found = next((c for c in available if c.name == wanted), None)
        if found is None:
            return f"I don't know /{wanted}. /help lists what I can do."
        return f"{found.usage}\n{found.help}" if found.help else found.usage
    lines = [f"I'm {ctx.bot.profile.name}. Talk to me in plain words, or use a command:"]
    lines += [f"  {c.usage} - {c.help}" if c.help else f"  {c.usage}" for c in available]
    if ctx.is_admin:
        lines.append("  /plugins, /plugin enable|disable|reload NAME - manage plugins (admin)")
        lines.append("  /access, /block WHO, /unblock WHO - who I answer (admin)")
        lines.append("  /status - what I run, since when, and what I have done (admin)")
    return "\n".join(lines)
