"""Built-in plugin ``privacy``: what the bot keeps about each person, and their control
over it. Always on (the operator cannot disable it).

/privacy, /export, /forget, /optout, /optin, /consent, /why, /reset, and "what do you remember
about me". Each acts on the speaker's own data only, selected by their own scope,
as recall selects it.
"""

from __future__ import annotations

import json
from typing import Literal

from core.memory import facts
from core.plugins import Context, Plugin, matchers

plugin = Plugin(
    "privacy", description="/privacy, /export, /forget, /optout, /optin, /consent, /why."
)

DM_ONLY = "For your privacy I only do that in a direct message with me."
_WHAT_DO_YOU_REMEMBER = (
    r"\bwhat (?:do|did) you (?:remember|know|recall) about me\b|\bwhat have you "
    r"(?:remembered|kept|stored) about me\b"
)


@plugin.command("reset", help="start this conversation afresh")
async def reset(ctx: Context) -> str:
    await ctx.personal_data.reset()
    return "Starting fresh: I won't use our earlier messages here as context from now on."


@plugin.on_message(matchers.regex(_WHAT_DO_YOU_REMEMBER), priority=50)
async def what_i_remember(ctx: Context) -> str:
    """An honest answer from the stored profile facts, as far as this place may see."""
    known = facts.describe(await ctx.personal_data.facts())
    where = "" if ctx.place.is_private else " from this channel"
    if not known:
        return (
            f"I don't remember anything about you{where} yet. "
            "/privacy shows what I keep and /export all of it."
        )
    lines = [f"Here is what I remember about you{where}:", *(f"- {line}" for line in known)]
    lines.append("/export shows everything I keep about you; /forget erases it.")
    return "\n".join(lines)


@plugin.command("privacy", help="what I keep about you, where, and for how long", data_right=True)
async def privacy(ctx: Context) -> str:
    data = ctx.personal_data
    counts = await data.counts()
    out = await data.opted_out()
    agreed = await data.consents()
    days = data.retention_days
    keep = f"for {days:g} days, then deleted automatically" if days else "until you erase it"
    lines = [
        "What I keep about you, and where:",
        f"- {counts['turns']} messages (yours, and my replies to you), "
        f"{counts['memories']} memories, {counts['facts']} profile facts, "
        f"{counts['summaries']} summaries of our direct messages, "
        f"{counts['emotions']} emotion readings of your messages, "
        f"{counts['plugin_data']} entries kept by plugins (such as reminders).",
        f"- Kept {keep}, in this bot's own database on its operator's machine.",
        "- What you say in a direct message is only ever used in your direct messages; "
        "what you say in a group channel is used only in that channel and in your DMs.",
        "- Your user id is stored as a keyed hash; stored text is "
        + ("encrypted." if data.encrypted else "not encrypted.")
        + (
            " E-mail addresses, phone and card numbers are removed before storing."
            if data.redacted
            else ""
        ),
        f"- You are opted {'out: I store nothing of yours' if out else 'in'}.",
        *(
            ["- This bot's admins have blocked you: I don't answer you or keep what you say."]
            if data.blocked
            else []
        ),
        "- Training: "
        + (
            "you agreed that your messages and my replies to you may be used, with personal "
            "data removed, to fine-tune my language model (/consent training off to withdraw)."
            if "training" in agreed
            else "your messages are not used to fine-tune my language model "
            "(/consent training to allow it)."
        ),
        "Commands: /export (everything, as JSON), /forget (erase everything), "
        "/optout and /optin, /consent, /why (what my last answer to you was based on).",
    ]
    return "\n".join(lines)


@plugin.command("export", help="everything I keep about you, as JSON (DM only)", data_right=True)
async def export(ctx: Context) -> str:
    if not ctx.place.is_private:
        return DM_ONLY
    return json.dumps(await ctx.personal_data.export(), indent=2, ensure_ascii=False)


@plugin.command("forget", help="erase everything about you (asks to confirm)", data_right=True)
async def forget(ctx: Context, confirm: str = "") -> str:
    if confirm.strip().lower() != "confirm":
        return (
            "This erases everything I keep about you, everywhere: your messages and my "
            "replies, memories, profile facts, summaries, and your opt-out if you set one. "
            "It cannot be undone. To go ahead, send: /forget confirm"
        )
    deleted = await ctx.personal_data.forget()
    total = sum(deleted.values())
    return (
        f"Done: I erased everything I kept about you ({total} records). "
        "I remember nothing of you now."
    )


@plugin.command("optout", help="stop storing anything you say", data_right=True)
async def optout(ctx: Context) -> str:
    await ctx.personal_data.set_opted_out(True)
    return (
        "You're opted out: I'll still answer you, but I won't store anything you say. "
        "What I kept before stays until you /forget it. /optin to undo."
    )


@plugin.command("optin", help="let me remember again", data_right=True)
async def optin(ctx: Context) -> str:
    await ctx.personal_data.set_opted_out(False)
    return "You're opted in again: I'll remember our conversations. /optout to stop."


@plugin.command(
    "consent", help="allow (or withdraw) use of your messages for training", data_right=True
)
async def consent(ctx: Context, purpose: str = "", choice: Literal["on", "off"] = "on") -> str:
    data = ctx.personal_data
    if purpose.lower() != "training":
        agreed = await data.consents()
        return (
            "/consent training lets this bot's operator use your messages, and my replies to "
            "you, to fine-tune my language model, with e-mail addresses, phone and card "
            "numbers and mentions removed and your ids replaced by pseudonyms. It is off "
            "unless you turn it on; /consent training off, /optout or /forget withdraw it. "
            f"You have currently {'allowed' if agreed else 'not allowed'} it."
        )
    if choice == "off":
        await data.set_consent("training", False)
        return "Withdrawn: your messages will not be exported for training from now on."
    if await data.opted_out():
        return "You are opted out, so I keep nothing to train on. /optin first, then ask again."
    await data.set_consent("training", True)
    return (
        "Thank you: your messages and my replies to you may now be used to fine-tune my "
        "language model (personal data removed). /consent training off withdraws it."
    )


@plugin.command("why", help="what my last answer to you was based on")
async def why(ctx: Context) -> str:
    answer = await ctx.personal_data.last_answer()
    if answer is None:
        return "I haven't answered you here yet (or I was told not to keep anything)."
    lines = [f'My last answer to you here was: "{_clip(answer.answer)}"', "It was based on:"]
    reading = answer.reading
    if reading is not None:
        felt = ", ".join(f"{name} {p:.0%}" for name, p in reading.labels.items())
        lines.append(
            f"- how your message read to me: {reading.ekman} ({felt}; "
            f"valence {reading.valence:+.2f}, arousal {reading.arousal:.2f})"
        )
    lines.append(f"- {answer.context_turns} earlier messages of this conversation")
    if answer.summary:
        lines.append("- the summary of our earlier conversation")
    if answer.recalled:
        lines.append("- these memories:")
        lines += [f'    "{_clip(text)}"' for text in answer.recalled]
    else:
        lines.append("- no long-term memories")
    return "\n".join(lines)


def _clip(text: str, limit: int = 160) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"
