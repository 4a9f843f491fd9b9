"""The turn pipeline: every incoming message goes through these stages, in order.

    guard -> route -> perceive -> hooks -> recall -> respond -> remember -> send

``route`` and ``hooks`` are the plugin host's (commands from the one command
table, then plugins' message hooks); the bot hands them in (:func:`stages`). A stage
may end the turn early by raising :class:`~core.turn.EndTurn` (with a reason that is
logged, and optionally an answer), or :class:`~core.errors.UserError` (the user is
told why). Any other error is logged with its traceback and answered with a short
apology; it never escapes to the adapter or other conversations.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import re
import time
import unicodedata
from dataclasses import replace

from core import commands
from core.emotion import policy
from core.errors import BackendError, BusyError, UserError
from core.memory import facts
from core.memory.longterm import worth_remembering
from core.memory.window import Remembered, budget_for, build_context
from core.people import rights
from core.privacy import redact
from core.settings import GroupSettings
from core.turn import EndTurn, Stage, Turn, TurnResult
from core.types import ChatMessage, Message, Reply, Role

log = logging.getLogger(__name__)

APOLOGY = "Sorry, I couldn't come up with a reply just now. Please try again in a moment."
BUSY = (
    "I'm answering a lot of people at once right now, so I couldn't get to you. "
    "Please send that again in a minute."
)


async def guard(turn: Turn) -> None:
    """Drop what must not be answered; refuse what cannot be; settle the privacy scope."""
    message, services = turn.message, turn.services
    privacy = services.store.privacy
    turn.scope = privacy.scope(message)
    turn.user_key = privacy.user_key(message.place.platform, message.speaker.user_id)
    groups = services.profile.groups
    unanswered = not_for_a_turn(message, groups)
    if unanswered is not None:
        raise EndTurn(unanswered)
    refusal = services.access.refusal(
        message, turn.user_key, admin=services.access.is_admin(message.speaker)
    )
    if refusal is not None and not services.commands.is_data_right(message.text):
        raise EndTurn(f"not allowed: {refusal.reason}", refusal.notice)
    limit = services.settings.max_message_chars
    if len(message.text) > limit:
        raise UserError(
            f"That message is too long for me ({len(message.text):,} characters; "
            f"the limit is {limit:,}). Could you shorten it?"
        )
    turn.keep = not await rights.is_opted_out(services.store, message.place.platform, turn.user_key)


def not_for_a_turn(message: Message, groups: GroupSettings) -> str | None:
    """Why ``message`` calls for no turn at all (another bot's, unless the profile answers
    bots; empty; in a group, not addressed to the bot), or None when it does. What calls
    for none is not written to the inbox."""
    if message.speaker.is_bot and not groups.answer_bots:
        return "message from a bot"
    if not message.text.strip():
        return "empty message"
    if not message.place.is_private and not addressed(message, groups):
        return "not addressed to the bot"
    return None


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


async def perceive(turn: Turn) -> None:
    """Read the message: normalise its text, read its emotion, embed it for memory."""
    text = unicodedata.normalize("NFC", turn.message.text)
    turn.text = "".join(c for c in text if c in "\n\t" or unicodedata.category(c) != "Cc").strip()
    if not turn.text:
        raise EndTurn("nothing but control characters")
    services = turn.services
    if services.emotions is not None:
        try:
            turn.emotion = await services.emotions.read_one(turn.text)
        except Exception:  # the reading is optional: the turn goes on without it
            log.exception("could not read the emotion of a message; answering without it")
    if services.memory is not None:
        turn.vector = (await services.memory.embedder.embed([turn.text]))[0]


async def recall(turn: Turn) -> None:
    """Build the model's context within the token budget, reading only within the scope:
    the persona, the conversation's summary, relevant long-term memories, recent turns."""
    services, message, scope = turn.services, turn.message, turn.scope
    assert scope is not None
    profile = services.profile
    history = await services.store.window_turns(
        profile.name, message.place, scope, limit=profile.context.max_turns
    )
    if profile.memory.summarize:
        turn.summary = await services.summaries.current(profile.name, message, scope)
    trajectory = await services.emotion_history.trajectory(scope, turn.user_key)
    turn.decision = policy.decide(turn.emotion, trajectory, profile.generation, profile.emotion)
    budget = budget_for(
        services.generator, profile.context.budget_tokens, profile.generation.max_new_tokens
    )
    build = functools.partial(
        build_context,
        services.generator,
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
    turn.prompt = build()
    if services.memory is None or turn.vector is None or not profile.memory.top_k:
        return
    found = await services.memory.search(
        scope,
        turn.vector,
        k=profile.memory.top_k,
        exclude_turns=turn.prompt.turn_ids,  # already in the window word for word
        min_similarity=profile.memory.min_similarity,
        half_life_days=profile.memory.recency_half_life_days,
    )
    if found:
        now = time.time()
        turn.prompt = build(
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
    services = turn.services
    assert turn.prompt is not None and turn.decision is not None
    params = turn.decision.params
    await turn.channel.typing()
    messages = turn.prompt.messages
    if services.generator.remote and services.store.privacy.redact_remote:
        messages = tuple(ChatMessage(m.role, redact(m.content)) for m in messages)
    pieces: list[str] = []
    opening = turn.decision.opening if services.generator.continues_replies else ""
    if opening:  # the policy begins the reply; the model goes on from there
        messages = (*messages, ChatMessage(Role.ASSISTANT, opening))
        pieces.append(opening)
        await turn.channel.stream(opening)
    try:
        async with asyncio.timeout(services.profile.model.timeout_s):
            async for piece in services.generator.stream(messages, params):
                if len(pieces) == 1 and opening and not piece[:1].isspace():
                    piece = " " + piece
                pieces.append(piece)
                if turn.first_piece_s is None:
                    turn.first_piece_s = time.perf_counter() - turn.started
                await turn.channel.stream(piece)
    except BusyError as error:
        log.warning("%s backend is busy: %s", services.generator.name, error)
        turn.failed, turn.reply = True, BUSY
        return
    except BackendError as error:
        log.error("%s backend failed: %s", services.generator.name, error)
    except TimeoutError:
        log.error(
            "%s backend gave no full reply in %g s",
            services.generator.name,
            services.profile.model.timeout_s,
        )
    except Exception:
        log.exception("%s backend failed", services.generator.name)
    else:
        turn.reply = tidy("".join(pieces))
        if turn.reply:
            return
        log.error("%s backend returned an empty reply", services.generator.name)
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
    services, prompt = turn.services, turn.prompt
    assert prompt is not None and turn.scope is not None
    if not turn.keep:
        return
    message = replace(turn.message, text=turn.text)
    async with services.store.transaction():  # one writer: all of it is kept, or none
        stored = await services.store.record_exchange(
            services.profile.name,
            message,
            None if turn.failed else turn.reply,
            context=prompt.turn_ids,
            recalled=prompt.memory_ids,
            summary=turn.summary.through_turn if turn.summary and prompt.summary_used else None,
        )
        user_turn = stored[0]
        if services.memory is not None and turn.vector is not None and worth_remembering(turn.text):
            await services.memory.add(message, turn.text, turn.vector, turn_id=user_turn)
        if turn.emotion is not None:
            await services.emotion_history.add(message, turn.emotion, user_turn)
        await services.facts.add(
            message, facts.extract(services.store.privacy.for_storage(turn.text)), user_turn
        )
        if turn.entry is not None:  # a restart now sends this reply rather than redo it
            await services.inbox.stored(turn.entry, stored[1])
    turn.stored = stored
    if services.profile.memory.summarize and prompt.turn_ids:
        services.folding.later(message, turn.scope, window_start=prompt.turn_ids[0])


def _reply(turn: Turn) -> Reply:
    reaction = turn.decision.reaction if turn.decision and not turn.failed else ""
    return Reply(
        turn.reply, turn.message.place, turn.message.id, failed=turn.failed, reaction=reaction
    )


async def send(turn: Turn) -> None:
    await turn.channel.send(_reply(turn))


Stages = tuple[tuple[str, Stage], ...]


def stages(route: Stage, hooks: Stage) -> Stages:
    """The turn, in order; ``route`` answers commands and ``hooks`` runs plugins' message
    hooks (both the plugin host's)."""
    return (
        ("guard", guard),
        ("route", route),
        ("perceive", perceive),
        ("hooks", hooks),
        ("recall", recall),
        ("respond", respond),
        ("remember", remember),
        ("send", send),
    )


async def run(turn: Turn, steps: Stages) -> TurnResult:
    """Take one turn through every stage."""
    where = turn.message.place.conversation
    for name, stage in steps:
        started = time.perf_counter()
        try:
            await stage(turn)
        except EndTurn as end:
            log.info("turn in %s ended at %s: %s", where, name, end.reason)
            if end.reply is None:
                _tally(turn, "unanswered")
                return TurnResult(None, end.reason)
            _tally(turn, "refused" if name == "guard" else "command")
            return await _answer(turn, end.reply, ended=end.reason)
        except UserError as error:
            log.info("turn in %s refused at %s: %s", where, name, error)
            _tally(turn, "refused")
            return await _answer(turn, str(error), ended=f"refused at {name}")
        except Exception:
            log.exception("stage %s failed in %s", name, where)
            _tally(turn, "error")
            return await _answer(turn, APOLOGY, ended=f"error at {name}", failed=True)
        finally:
            turn.timings[name] = time.perf_counter() - started
    _tally(turn, "model")
    if turn.failed:  # /status counts the apologies among the model's replies
        _tally(turn, "model_failed")
    log.info(
        "turn in %s answered (%s)",
        where,
        ", ".join(f"{k} {v * 1000:.0f} ms" for k, v in turn.timings.items()),
    )
    return TurnResult(_reply(turn), "backend failed" if turn.failed else None, turn.stored)


def _tally(turn: Turn, outcome: str) -> None:
    """How the turn ended (see core.status.OUTCOMES), for /status and the metrics."""
    turn.outcome = outcome
    turn.services.outcomes[outcome] += 1


async def _answer(turn: Turn, text: str, *, ended: str, failed: bool = False) -> TurnResult:
    reply = Reply(text, turn.message.place, turn.message.id, failed=failed)
    try:
        await turn.channel.send(reply)
    except Exception:
        log.exception("could not send an answer in %s", turn.message.place.conversation)
        return TurnResult(None, ended, turn.stored)
    return TurnResult(reply, ended, turn.stored)
