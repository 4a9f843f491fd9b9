"""The turn pipeline: every incoming message goes through these stages, in order.

    guard -> route -> perceive -> recall -> respond -> remember -> send

A stage may end the turn early by raising :class:`EndTurn` (with a reason that
is logged, and optionally an answer), or :class:`~core.errors.UserError` (the
user is told why). Any other error is logged with its traceback and answered
with a short apology; it never escapes to the adapter or other conversations.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
import unicodedata
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

from core import commands
from core.adapter import ReplyChannel
from core.dialogue import Context, budget_for, build_context
from core.errors import BackendError, UserError
from core.types import Message, Reply

if TYPE_CHECKING:
    from core.bot import Bot

log = logging.getLogger(__name__)

APOLOGY = "Sorry, I couldn't come up with a reply just now. Please try again in a moment."


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
    text: str = ""
    context: Context | None = None
    reply: str = ""
    failed: bool = False
    stored: tuple[int, int | None] | None = None
    timings: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class TurnResult:
    reply: Reply | None
    """What was sent, if anything."""
    ended: str | None = None
    """Why the turn stopped before the end, if it did."""
    stored: tuple[int, int | None] | None = None


async def guard(turn: Turn) -> None:
    """Drop what must not be answered; refuse what cannot be."""
    message = turn.message
    if message.speaker.is_bot:
        raise EndTurn("message from a bot")
    if not message.text.strip():
        raise EndTurn("empty message")
    limit = turn.bot.settings.max_message_chars
    if len(message.text) > limit:
        raise UserError(
            f"That message is too long for me ({len(message.text):,} characters; "
            f"the limit is {limit:,}). Could you shorten it?"
        )


async def route(turn: Turn) -> None:
    """Commands are answered here and never reach the language model."""
    parsed = commands.parse(turn.message.text)
    if parsed is None:
        return
    name, args = parsed
    command = commands.BUILTIN.get(name)
    if command is None:
        raise EndTurn(f"unknown command /{name}", f"I don't know /{name}. Try /help.")
    raise EndTurn(f"command /{name}", await command.handler(turn, args))


async def perceive(turn: Turn) -> None:
    """Read the message: normalise its text (later: emotion, language)."""
    text = unicodedata.normalize("NFC", turn.message.text)
    turn.text = "".join(c for c in text if c in "\n\t" or unicodedata.category(c) != "Cc").strip()
    if not turn.text:
        raise EndTurn("nothing but control characters")


async def recall(turn: Turn) -> None:
    """Build the model's context: persona and recent turns within the token budget."""
    bot, message = turn.bot, turn.message
    profile = bot.profile
    history = await bot.store.recent_turns(
        profile.name, message.place.conversation, limit=profile.context.max_turns
    )
    turn.context = build_context(
        bot.generator,
        persona=profile.persona,
        history=history,
        incoming=turn.text,
        budget=budget_for(
            bot.generator, profile.context.budget_tokens, profile.generation.max_new_tokens
        ),
        group=not message.place.is_private,
        speaker_name=message.speaker.display_name or message.speaker.user_id,
    )


async def respond(turn: Turn) -> None:
    """Generate the reply, streaming pieces to the channel; a failing backend gets an apology."""
    bot = turn.bot
    assert turn.context is not None
    await turn.channel.typing()
    pieces: list[str] = []
    try:
        async with asyncio.timeout(bot.profile.model.timeout_s):
            async for piece in bot.generator.stream(turn.context.messages, bot.profile.generation):
                pieces.append(piece)
                await turn.channel.stream(piece)
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
    """Make the message and the reply durable before anything is sent."""
    assert turn.context is not None
    turn.stored = await turn.bot.store.record_exchange(
        turn.bot.profile.name,
        replace(turn.message, text=turn.text),
        None if turn.failed else turn.reply,
        context=turn.context.turn_ids,
    )


async def send(turn: Turn) -> None:
    reply = Reply(turn.reply, turn.message.place, turn.message.id, failed=turn.failed)
    await turn.channel.send(reply)


Stage = Callable[[Turn], Awaitable[None]]

STAGES: tuple[tuple[str, Stage], ...] = (
    ("guard", guard),
    ("route", route),
    ("perceive", perceive),
    ("recall", recall),
    ("respond", respond),
    ("remember", remember),
    ("send", send),
)


async def run(turn: Turn) -> TurnResult:
    """Take one turn through every stage."""
    where = turn.message.place.conversation
    for name, stage in STAGES:
        started = time.perf_counter()
        try:
            await stage(turn)
        except EndTurn as end:
            log.info("turn in %s ended at %s: %s", where, name, end.reason)
            if end.reply is None:
                return TurnResult(None, end.reason)
            return await _answer(turn, end.reply, ended=end.reason)
        except UserError as error:
            log.info("turn in %s refused at %s: %s", where, name, error)
            return await _answer(turn, str(error), ended=f"refused at {name}")
        except Exception:
            log.exception("stage %s failed in %s", name, where)
            return await _answer(turn, APOLOGY, ended=f"error at {name}", failed=True)
        finally:
            turn.timings[name] = time.perf_counter() - started
    log.info(
        "turn in %s answered (%s)",
        where,
        ", ".join(f"{k} {v * 1000:.0f} ms" for k, v in turn.timings.items()),
    )
    reply = Reply(turn.reply, turn.message.place, turn.message.id, failed=turn.failed)
    return TurnResult(reply, "backend failed" if turn.failed else None, turn.stored)


async def _answer(turn: Turn, text: str, *, ended: str, failed: bool = False) -> TurnResult:
    reply = Reply(text, turn.message.place, turn.message.id, failed=failed)
    try:
        await turn.channel.send(reply)
    except Exception:
        log.exception("could not send an answer in %s", turn.message.place.conversation)
        return TurnResult(None, ended, turn.stored)
    return TurnResult(reply, ended, turn.stored)
