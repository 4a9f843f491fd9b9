"""Conversations for fine-tuning the chat model, read from the documented formats, and
turned into token ids with a loss mask that covers the bot's turns only.

Formats (the file's suffix decides):

* ``.jsonl``: one conversation per line, ``{"messages": [{"role": "system" | "user" |
  "assistant", "content": "..."}, ...]}`` (OpenAI's chat fine-tuning format; extra keys
  are ignored). ``socialbot export training`` writes this format.
* ``.csv``: Synthetic-Persona-Chat (columns ``user 1 personas``, ``user 2 personas``,
  ``Best Generated Conversation``). One speaker plays the bot: their persona lines become
  the system prompt, their lines the assistant's turns, the other speaker's the user's.
"""

from __future__ import annotations

import csv
import json
import random
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from core._files import read_lines
from core.errors import ConfigError
from core.generation.models import chat_ids

Conversation = list[dict[str, str]]
ROLES = ("system", "user", "assistant")
PERSONA_PROMPT = "You are chatting with someone you just met. About you:\n{persona}"
_SPEAKER = re.compile(r"^\s*User\s*([12])\s*:\s*(.*)$")


def read_conversations(
    path: Path, *, bot_speaker: Literal["1", "2", "both"] = "both"
) -> list[Conversation]:
    """Every conversation in ``path``; a malformed record is a ConfigError naming its line."""
    if path.suffix == ".jsonl":
        return _read_jsonl(path)
    if path.suffix == ".csv":
        return _read_persona_chat(path, bot_speaker)
    raise ConfigError(f"{path}: unknown data format (expected .jsonl or .csv)")


def _read_jsonl(path: Path) -> list[Conversation]:
    conversations = []
    for number, line in enumerate(read_lines(path), 1):
        if not line.strip():
            continue
        where = f"{path}:{number}"
        try:
            record = json.loads(line)
        except json.JSONDecodeError as error:
            raise ConfigError(f"{where}: not JSON ({error.msg})") from None
        messages = record.get("messages") if isinstance(record, dict) else None
        if not isinstance(messages, list):
            raise ConfigError(f'{where}: expected {{"messages": [...]}}')
        conversation = []
        for message in messages:
            if (
                not isinstance(message, dict)
                or message.get("role") not in ROLES
                or not isinstance(message.get("content"), str)
            ):
                raise ConfigError(
                    f"{where}: each message needs a role (system, user or assistant) "
                    "and a string content"
                )
            conversation.append({"role": message["role"], "content": message["content"]})
        _check(conversation, where)
        conversations.append(conversation)
    return conversations


def _check(conversation: Conversation, where: str) -> None:
    if not any(m["role"] == "assistant" for m in conversation):
        raise ConfigError(f"{where}: the conversation has no assistant turn to learn from")
    if any(m["role"] == "system" for m in conversation[1:]):
        raise ConfigError(f"{where}: a system message may only come first")


def _read_persona_chat(path: Path, bot_speaker: str) -> list[Conversation]:
    try:
        with path.open(encoding="utf-8", newline="") as file:
            rows = list(csv.DictReader(file))
    except (OSError, UnicodeDecodeError, csv.Error) as error:
        raise ConfigError(f"cannot read {path}: {error}") from None
    columns = {"user 1 personas", "user 2 personas", "Best Generated Conversation"}
    if rows and not columns <= set(rows[0]):
        raise ConfigError(f"{path}: expected Synthetic-Persona-Chat columns {sorted(columns)}")
    speakers = ("1", "2") if bot_speaker == "both" else (bot_speaker,)
    conversations = []
    for number, row in enumerate(rows, 2):
        lines = []
        for text in row["Best Generated Conversation"].splitlines():
            match = _SPEAKER.match(text)
            if match and match.group(2).strip():
                lines.append((match.group(1), match.group(2).strip()))
            elif lines and text.strip():  # a line break inside one speaker's turn
                lines[-1] = (lines[-1][0], f"{lines[-1][1]}\n{text.strip()}")
        for bot in speakers:
            persona = "\n".join(
                line.strip() for line in row[f"user {bot} personas"].splitlines() if line.strip()
            )
            conversation = [{"role": "system", "content": PERSONA_PROMPT.format(persona=persona)}]
            for speaker, text in lines:
                role = "assistant" if speaker == bot else "user"
                if conversation[-1]["role"] == role:  # the same speaker twice: one turn
                    conversation[-1]["content"] += "\n" + text
                else:
                    conversation.append({"role": role, "content": text})
            if len(conversation) > 1 and conversation[1]["role"] == "assistant":
                # Chat templates expect a user turn first; the bot's opening line is kept
                # as context, not as something to learn without a prompt.
                conversation.insert(1, {"role": "user", "content": "Hi!"})
            try:
                _check(conversation, f"{path}:{number}")
            except ConfigError:
                continue  # an empty or one-sided conversation: nothing to learn here
            conversations.append(conversation)
    if not conversations:
        raise ConfigError(f"{path}: no conversations found")
    return conversations


def split(
    conversations: Sequence[Conversation], dev_fraction: float, seed: int
) -> tuple[list[Conversation], list[Conversation]]:
    """A reproducible train/dev split by whole conversations."""
    order = list(range(len(conversations)))
    random.Random(seed).shuffle(order)
    n_dev = max(1, round(len(order) * dev_fraction)) if dev_fraction > 0 else 0
    if len(order) - n_dev < 1:
        raise ConfigError("too few conversations to hold some out for evaluation")
    dev = [conversations[i] for i in sorted(order[:n_dev])]
    train = [conversations[i] for i in sorted(order[n_dev:])]
    return train, dev


@dataclass(frozen=True, slots=True)
class Example:
    """One training sequence: token ids and which of them the loss is taken on."""

    input_ids: list[int]
    labels: list[int]  # -100 where the token is not the bot's (system, user, template)

    @property
    def trained_tokens(self) -> int:
        return sum(1 for label in self.labels if label != -100)


def encode(tokenizer: Any, conversation: Conversation, max_length: int) -> list[Example]:
    """Token ids of ``conversation`` in the model's own chat template, with labels on the
    assistant's turns only (their text and the end-of-turn marker).

    A conversation longer than ``max_length`` is cut at turn boundaries into several
    examples, each starting again with the system message so that every example looks
    like a prompt the bot really sees.
    """
    system = conversation[:1] if conversation and conversation[0]["role"] == "system" else []
    turns = conversation[len(system) :]
    examples: list[Example] = []
    start = 0
    while start < len(turns):
        ids, labels, ends = _label(tokenizer, system + turns[start:])
        if not ends:
            break  # no bot turn left
        fits = [(index, end) for index, end in ends if end <= max_length]
        if fits:
            last, end = fits[-1]
            examples.append(Example(ids[:end], labels[:end]))
        else:  # even the next bot turn alone is too long: train on the part that fits
            last = ends[0][0]
            if any(label != -100 for label in labels[:max_length]):
                examples.append(Example(ids[:max_length], labels[:max_length]))
        start += last - len(system) + 1  # go on after the last bot turn taken
    return examples


def encode_all(
    tokenizer: Any, conversations: Sequence[Conversation], max_length: int
) -> list[Example]:
    return [e for c in conversations for e in encode(tokenizer, c, max_length)]


def _label(
    tokenizer: Any, messages: Conversation
) -> tuple[list[int], list[int], list[tuple[int, int]]]:
    """Ids of the whole rendering, labels, and (message index, end position) per bot turn."""
    full = chat_ids(tokenizer, messages, False)
    labels = [-100] * len(full)
    ends = []
    for index, message in enumerate(messages):
        if message["role"] != "assistant":
            continue
        before = chat_ids(tokenizer, messages[:index], True)
        through = chat_ids(tokenizer, messages[: index + 1], False)
        if full[: len(through)] != through or through[: len(before)] != before:
            raise ConfigError(
                "the model's chat template does not render a conversation as the sum of "
                "its turns, so the bot's tokens cannot be told apart"
            )
        labels[len(before) : len(through)] = full[len(before) : len(through)]
        ends.append((index, len(through)))
    return full, labels, ends
