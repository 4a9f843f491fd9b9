"""The turn pipeline: every incoming message goes through these stages, in order.

    guard -> route -> perceive -> hooks -> recall -> respond -> remember -> send

A stage may end the turn early by raising :class:`EndTurn` (with a reason that
is logged, and optionally an answer), or :class:`~core.errors.UserError` (the
user is told why). Any other error is logged with its traceback and answered
with a short apology; it never escapes to the adapter or other conversations.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import re
import time
import unicodedata
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

from core import commands, facts, userdata
from core.access import DATA_RIGHTS
from core.adapter import ReplyChannel
from core.dialogue import Context, Remembered, budget_for, build_context
from core.emotion import policy
from core.emotion.labels import Reading
from core.emotion.policy import Decision
from core.errors import BackendError, BusyError, UserError
from core.memory import Vectors, worth_remembering
from core.plugin_host import EndTurnWith
from core.privacy import Scope, redact
from core.settings import GroupSettings
from core.summary import Summary
from core.types import ChatMessage, Message, Reply, Role

if TYPE_CHECKING:
    from core.bot import Bot

log = logging.getLogger(__name__)

APOLOGY = "Sorry, I couldn't come up with a reply just now. Please try again in a moment."
BUSY = (
    "I'm answering a lot of people at once right now, so I couldn't get to you. "
    "Please send that again in a minute."
)


class EndTurn(Exception):
    """Raised by a stage to finish the turn early; ``reply`` (if any) is sent as is."""

    def __init__(self, reason: str, reply: str | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.reply = reply


@dataclass(slots=True)
class Turn:
    """One message on its way through the pipeline, and what the stages found."""

    bot: Bot
    message: Message
    channel: ReplyChannel
    scope: Scope | None = None
    """What may be recalled here; set by guard, before anything is read."""
    user_key: str = ""
    keep: bool = True
    """False while the speaker has opted out: nothing of theirs is stored."""
    text: str = ""
    emotion: Reading | None = None
    """The emotion read from the message (perceive), for the policy and for plugins."""
    decision: Decision | None = None
    vector: Vectors | None = None
    summary: Summary | None = None
    context: Context | None = None
    reply: str = ""
    failed: bool = False
    stored: tuple[int, int | None] | None = None
    persona: str | None = None
    """A plugin's persona for this turn, instead of the profile's."""
    notes: list[str] = field(default_factory=list)
    """What plugins give the model for this turn (reference passages, instructions)."""
    timings: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class TurnResult:
    reply: Reply | None
    """What was sent, if anything."""
    ended: str | None = None
    """Why the turn stopped before the end, if it did."""
    stored: tuple[int, int | None] | None = None


async def guard(turn: Turn) -> None:
    """Drop what must not be answered; refuse what cannot be; settle the privacy scope."""
    message = turn.message
    privacy = turn.bot.store.privacy
    turn.scope = privacy.scope(message)
    turn.user_key = privacy.user_key(message.place.platform, message.speaker.user_id)
    groups = turn.bot.profile.groups
    if message.speaker.is_bot and not groups.answer_bots:
        raise EndTurn("message from a bot")
    if not message.text.strip():
        raise EndTurn("empty message")
    if not message.place.is_private and not addressed(message, groups):
        raise EndTurn("not addressed to the bot")
    refusal = turn.bot.access.refusal(
        message, turn.user_key, admin=turn.bot.is_admin(message.speaker)
    )
    if refusal is not None and not _data_rights(message.text):
        raise EndTurn(f"not allowed: {refusal.reason}", refusal.notice)
    limit = turn.bot.settings.max_message_chars
    if len(message.text) > limit:
        raise UserError(
            f"That message is too long for me ({len(message.text):,} characters; "
            f"the limit is {limit:,}). Could you shorten it?"
        )
    turn.keep = not await userdata.is_opted_out(
        turn.bot.store, message.place.platform, turn.user_key
    )


def _data_rights(text: str) -> bool:
    """A command that no allow or block list may refuse (route answers it)."""
    parsed = commands.parse(text)
    return parsed is not None and parsed[0] in DATA_RIGHTS


def addressed(message: Message, groups: GroupSettings) -> bool:
    """Whether a group message calls for an answer, as the profile's [groups] says."""
    if groups.answer == "always" or message.mentions_bot or commands.parse(message.text):
        return True
    if groups.answer == "keyword":
        return any(
            re.search(rf"(?<!\w){re.escape(k)}(?!\w)", message.text, re.IGNORECASE)
            for k in groups.keywords
            if k.strip()
        )
    return False


async def route(turn: Turn) -> None:
    """Commands (the plugins', and the admin ones) are answered here, without the model."""
    try:
        await turn.bot.plugins.route(turn)
    except EndTurnWith as end:
        raise EndTurn(end.reason, end.reply) from None


async def perceive(turn: Turn) -> None:
    """Read the message: normalise its text, read its emotion, embed it for memory."""
    text = unicodedata.normalize("NFC", turn.message.text)
    turn.text = "".join(c for c in text if c in "\n\t" or unicodedata.category(c) != "Cc").strip()
    if not turn.text:
        raise EndTurn("nothing but control characters")
    if turn.bot.emotions is not None:
        turn.emotion = await turn.bot.emotions.read_one(turn.text)
    if turn.bot.memory is not None:
        turn.vector = (await turn.bot.memory.embedder.embed([turn.text]))[0]


async def hooks(turn: Turn) -> None:
    """Plugins' message hooks: each may answer, stop the turn, or add to the prompt."""
    try:
        await turn.bot.plugins.run_hooks(turn)
    except EndTurnWith as end:
        raise EndTurn(end.reason, end.reply) from None


async def recall(turn: Turn) -> None:
    """Build the model's context within the token budget, reading only within the scope:
    the persona, the conversation's summary, relevant long-term memories, recent turns."""
    bot, message, scope = turn.bot, turn.message, turn.scope
    assert scope is not None
    profile = bot.profile
    history = await bot.store.window_turns(
        profile.name, message.place, scope, limit=profile.context.max_turns
    )
    if profile.memory.summarize:
        turn.summary = await bot.summaries.current(profile.name, message, scope)
    trajectory = await bot.emotion_history.trajectory(scope, turn.user_key)
    turn.decision = policy.decide(turn.emotion, trajectory, profile.generation, profile.emotion)
    budget = budget_for(
        bot.generator, profile.context.budget_tokens, profile.generation.max_new_tokens
    )
    build = functools.partial(
        build_context,
        bot.generator,
        persona=turn.persona or profile.persona,
        history=history,
        incoming=turn.text,
        budget=budget,
        group=not message.place.is_private,
        speaker_name=message.speaker.display_name or message.speaker.user_id,
        summary=turn.summary.text if turn.summary else None,
        summary_version=turn.summary.through_turn if turn.summary else None,
        memory_budget=int(budget * profile.memory.budget_share),
        guidance="\n\n".join(filter(None, [turn.decision.guidance, *turn.notes])),
    )
    turn.context = build()
    if bot.memory is None or turn.vector is None or not profile.memory.top_k:
        return
    found = await bot.memory.search(
        scope,
        turn.vector,
        k=profile.memory.top_k,
        exclude_turns=turn.context.turn_ids,  # already in the window word for word
        min_similarity=profile.memory.min_similarity,
        half_life_days=profile.memory.recency_half_life_days,
    )
    if found:
        now = time.time()
        turn.context = build(
            memories=[Remembered(m.id, m.text, _age(now - m.created_at)) for m in found]
        )


def _age(seconds: float) -> str:
    days = seconds / 86400
    if days < 1:
        return "today"
    if days < 2:
        return "yesterday"
    if days < 60:
        return f"{days:.0f} days ago"
    return f"{days / 30:.0f} months ago"


async def respond(turn: Turn) -> None:
    """Generate the reply, streaming pieces to the channel; a failing backend gets an apology."""
    bot = turn.bot
    assert turn.context is not None and turn.decision is not None
    params = turn.decision.params
    await turn.channel.typing()
    messages = turn.context.messages
    if bot.generator.remote and bot.store.privacy.redact_remote:
        messages = tuple(ChatMessage(m.role, redact(m.content)) for m in messages)
    pieces: list[str] = []
    opening = turn.decision.opening if bot.generator.continues_replies else ""
    if opening:  # the policy begins the reply; the model goes on from there
        messages = (*messages, ChatMessage(Role.ASSISTANT, opening))
        pieces.append(opening)
        await turn.channel.stream(opening)
    try:
        async with asyncio.timeout(bot.profile.model.timeout_s):
            async for piece in bot.generator.stream(messages, params):
                if len(pieces) == 1 and opening and not piece[:1].isspace():
                    piece = " " + piece
                pieces.append(piece)
                await turn.channel.stream(piece)
    except BusyError as error:
        log.warning("%s backend is busy: %s", bot.generator.name, error)
        turn.failed, turn.reply = True, BUSY
        return
    except BackendError as error:
        log.error("%s backend failed: %s", bot.generator.name, error)
    except TimeoutError:
        log.error(
            "%s backend gave no full reply in %g s", bot.generator.name, bot.profile.model.timeout_s
        )
    except Exception:
        log.exception("%s backend failed", bot.generator.name)
    else:
        turn.reply = tidy("".join(pieces))
        if turn.reply:
            return
        log.error("%s backend returned an empty reply", bot.generator.name)
    turn.failed, turn.reply = True, APOLOGY


_SENTENCE_END = re.compile(r"[.!?…][\"')\]]*(?=\s|$)")


def tidy(text: str) -> str:
    """Strip the reply and drop a last sentence that a length limit cut in half."""
    text = text.strip()
    if not text or not text[-1].isalnum():  # ends in punctuation, an emoji, a smiley
        return text
    ends = list(_SENTENCE_END.finditer(text))
    if ends and ends[-1].end() >= len(text) // 3:
        return text[: ends[-1].end()].strip()
    return text


async def remember(turn: Turn) -> None:
    """Make the message and the reply durable before anything is sent (unless opted out),
    with the message's memory and any facts it states; fold old turns into the summary."""
    bot, context = turn.bot, turn.context
    assert context is not None and turn.scope is not None
    if not turn.keep:
        return
    message = replace(turn.message, text=turn.text)
    async with bot.store.transaction():  # one writer: all of it is kept, or none
        stored = await bot.store.record_exchange(
            bot.profile.name,
            message,
            None if turn.failed else turn.reply,
            context=context.turn_ids,
            recalled=context.memory_ids,
            summary=turn.summary.through_turn if turn.summary and context.summary_used else None,
        )
        user_turn = stored[0]
        if bot.memory is not None and turn.vector is not None and worth_remembering(turn.text):
            await bot.memory.add(message, turn.text, turn.vector, turn_id=user_turn)
        if turn.emotion is not None:
            await bot.emotion_history.add(message, turn.emotion, user_turn)
        await bot.profiles.add(
            message, facts.extract(bot.store.privacy.for_storage(turn.text)), user_turn
        )
    turn.stored = stored
    if bot.profile.memory.summarize and context.turn_ids:
        bot.fold_later(message, turn.scope, window_start=context.turn_ids[0])


def _reply(turn: Turn) -> Reply:
    reaction = turn.decision.reaction if turn.decision and not turn.failed else ""
    return Reply(
        turn.reply, turn.message.place, turn.message.id, failed=turn.failed, reaction=reaction
    )


async def send(turn: Turn) -> None:
    await turn.channel.send(_reply(turn))


Stage = Callable[[Turn], Awaitable[None]]

STAGES: tuple[tuple[str, Stage], ...] = (
    ("guard", guard),
    ("route", route),
    ("perceive", perceive),
    ("hooks", hooks),
    ("recall", recall),
    ("respond", respond),
    ("remember", remember),
    ("send", send),
)


async def run(turn: Turn) -> TurnResult:
    """Take one turn through every stage."""
    where = turn.message.place.conversation
    outcomes = turn.bot.outcomes
    for name, stage in STAGES:
        started = time.perf_counter()
        try:
            await stage(turn)
        except EndTurn as end:
            log.info("turn in %s ended at %s: %s", where, name, end.reason)
            if end.reply is None:
                outcomes["unanswered"] += 1
                return TurnResult(None, end.reason)
            outcomes["refused" if name == "guard" else "command"] += 1
            return await _answer(turn, end.reply, ended=end.reason)
        except UserError as error:
            log.info("turn in %s refused at %s: %s", where, name, error)
            outcomes["refused"] += 1
            return await _answer(turn, str(error), ended=f"refused at {name}")
        except Exception:
            log.exception("stage %s failed in %s", name, where)
            outcomes["error"] += 1
            return await _answer(turn, APOLOGY, ended=f"error at {name}", failed=True)
        finally:
            turn.timings[name] = time.perf_counter() - started
    outcomes["model"] += 1
    if turn.failed:
        outcomes["model_failed"] += 1
    log.info(
        "turn in %s answered (%s)",
        where,
        ", ".join(f"{k} {v * 1000:.0f} ms" for k, v in turn.timings.items()),
    )
    return TurnResult(_reply(turn), "backend failed" if turn.failed else None, turn.stored)


async def _answer(turn: Turn, text: str, *, ended: str, failed: bool = False) -> TurnResult:
    reply = Reply(text, turn.message.place, turn.message.id, failed=failed)
    try:
        await turn.channel.send(reply)
    except Exception:
        log.exception("could not send an answer in %s", turn.message.place.conversation)
        return TurnResult(None, ended, turn.stored)
    return TurnResult(reply, ended, turn.stored)
