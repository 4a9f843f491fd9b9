"""Built-in plugin ``privacy``: what the bot keeps about each person, and their control
over it. Always on (the operator cannot disable it).

/privacy, /export, /forget, /optout, /optin, /consent, /why, /reset, and "what do you remember
about me". Each acts on the speaker's own data only, selected by their own scope,
as recall selects it.
"""

from __future__ import annotations

import json
from typing import Literal

from core import facts, userdata
from core.pipeline import Turn
from core.plugins import Context, Plugin, matchers

plugin = Plugin(
    "privacy", description="/privacy, /export, /forget, /optout, /optin, /consent, /why."
)

DM_ONLY = "For your privacy I only do that in a direct message with me."
_WHAT_DO_YOU_REMEMBER = (
    r"\bwhat (?:do|did) you (?:remember|know|recall) about me\b|\bwhat have you "
    r"(?:remembered|kept|stored) about me\b"
)


def _owner(turn: Turn) -> tuple[str, str]:
    return turn.message.place.platform, turn.user_key


@plugin.command("reset", help="start this conversation afresh")
async def reset(ctx: Context) -> str:
    turn = ctx.turn
    await turn.bot.store.reset(turn.bot.profile.name, turn.message)
    return "Starting fresh: I won't use our earlier messages here as context from now on."


@plugin.on_message(matchers.regex(_WHAT_DO_YOU_REMEMBER), priority=50)
async def what_i_remember(ctx: Context) -> str:
    """An honest answer from the stored profile facts, as far as this place may see."""
    turn = ctx.turn
    assert turn.scope is not None
    known = facts.describe(await turn.bot.profiles.about(turn.scope, turn.user_key))
    where = "" if turn.message.place.is_private else " from this channel"
    if not known:
        return (
            f"I don't remember anything about you{where} yet. "
            "/privacy shows what I keep and /export all of it."
        )
    lines = [f"Here is what I remember about you{where}:", *(f"- {line}" for line in known)]
    lines.append("/export shows everything I keep about you; /forget erases it.")
    return "\n".join(lines)


@plugin.command("privacy", help="what I keep about you, where, and for how long")
async def privacy(ctx: Context) -> str:
    turn = ctx.turn
    bot = turn.bot
    counts = await userdata.counts(bot.store, *_owner(turn))
    out = await userdata.is_opted_out(bot.store, *_owner(turn))
    agreed = await userdata.consents(bot.store, *_owner(turn))
    days = bot.profile.privacy.retention_days
    privacy = bot.store.privacy
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
        + ("encrypted." if privacy.cipher.enabled else "not encrypted.")
        + (
            " E-mail addresses, phone and card numbers are removed before storing."
            if privacy.redact_stored
            else ""
        ),
        f"- You are opted {'out: I store nothing of yours' if out else 'in'}.",
        *(
            ["- This bot's admins have blocked you: I don't answer you or keep what you say."]
            if bot.access.blocks(turn.message.speaker, turn.user_key)
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


@plugin.command("export", help="everything I keep about you, as JSON (DM only)")
async def export(ctx: Context) -> str:
    turn = ctx.turn
    if not turn.message.place.is_private:
        return DM_ONLY
    data = await userdata.export(turn.bot.store, *_owner(turn))
    return json.dumps(data, indent=2, ensure_ascii=False)


@plugin.command("forget", help="erase everything about you (asks to confirm)")
async def forget(ctx: Context, confirm: str = "") -> str:
    turn = ctx.turn
    if confirm.strip().lower() != "confirm":
        return (
            "This erases everything I keep about you, everywhere: your messages and my "
            "replies, memories, profile facts, summaries, and your opt-out if you set one. "
            "It cannot be undone. To go ahead, send: /forget confirm"
        )
    deleted = await userdata.forget(turn.bot.store, turn.bot.memory, *_owner(turn))
    total = sum(deleted.values())
    return (
        f"Done: I erased everything I kept about you ({total} records). "
        "I remember nothing of you now."
    )


@plugin.command("optout", help="stop storing anything you say")
async def optout(ctx: Context) -> str:
    turn = ctx.turn
    await userdata.set_opted_out(turn.bot.store, *_owner(turn), True)
    return (
        "You're opted out: I'll still answer you, but I won't store anything you say. "
        "What I kept before stays until you /forget it. /optin to undo."
    )


@plugin.command("optin", help="let me remember again")
async def optin(ctx: Context) -> str:
    turn = ctx.turn
    await userdata.set_opted_out(turn.bot.store, *_owner(turn), False)
    return "You're opted in again: I'll remember our conversations. /optout to stop."


@plugin.command("consent", help="allow (or withdraw) use of your messages for training")
async def consent(ctx: Context, purpose: str = "", choice: Literal["on", "off"] = "on") -> str:
    turn = ctx.turn
    owner = _owner(turn)
    if purpose.lower() != "training":
        agreed = await userdata.consents(turn.bot.store, *owner)
        return (
            "/consent training lets this bot's operator use your messages, and my replies to "
            "you, to fine-tune my language model, with e-mail addresses, phone and card "
            "numbers and mentions removed and your ids replaced by pseudonyms. It is off "
            "unless you turn it on; /consent training off, /optout or /forget withdraw it. "
            f"You have currently {'allowed' if agreed else 'not allowed'} it."
        )
    if choice == "off":
        await userdata.set_consent(turn.bot.store, *owner, "training", False)
        return "Withdrawn: your messages will not be exported for training from now on."
    if await userdata.is_opted_out(turn.bot.store, *owner):
        return "You are opted out, so I keep nothing to train on. /optin first, then ask again."
    await userdata.set_consent(turn.bot.store, *owner, "training", True)
    return (
        "Thank you: your messages and my replies to you may now be used to fine-tune my "
        "language model (personal data removed). /consent training off withdraws it."
    )


@plugin.command("why", help="what my last answer to you was based on")
async def why(ctx: Context) -> str:
    turn = ctx.turn
    bot, scope = turn.bot, turn.scope
    assert scope is not None
    answer = await bot.store.last_answer(bot.profile.name, turn.message.place, scope, turn.user_key)
    if answer is None:
        return "I haven't answered you here yet (or I was told not to keep anything)."
    lines = [f'My last answer to you here was: "{_clip(answer.text)}"', "It was based on:"]
    asked = await bot.store.turn(answer.answers, scope) if answer.answers else None
    reading = await bot.emotion_history.for_turn(scope, asked.id) if asked else None
    if reading is not None:
        felt = ", ".join(f"{name} {p:.0%}" for name, p in reading.labels.items())
        lines.append(
            f"- how your message read to me: {reading.ekman} ({felt}; "
            f"valence {reading.valence:+.2f}, arousal {reading.arousal:.2f})"
        )
    lines.append(f"- {len(answer.context)} earlier messages of this conversation")
    if answer.summary is not None:
        lines.append("- the summary of our earlier conversation")
    recalled = await bot.memory.by_ids(scope, answer.recalled) if bot.memory else []
    if recalled:
        lines.append("- these memories:")
        lines += [f'    "{_clip(m.text)}"' for m in recalled]
    else:
        lines.append("- no long-term memories")
    return "\n".join(lines)


def _clip(text: str, limit: int = 160) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"
