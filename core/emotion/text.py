"""Emoji spelled out by name, for an encoder whose vocabulary has none.

all-MiniLM-L6-v2 reads every emoji as the same unknown token, so "😢", "😂" and "❤️"
look alike to it. A network trained on text with emoji spelled out ("crying face",
"face with tears of joy", names from the ``emoji`` library) can read them. The spelling
drops skin tones and reads a run of one emoji ("😂😂😂") as one.
"""

from __future__ import annotations

import re

import emoji

_SKIN_TONES = re.compile("[\U0001f3fb-\U0001f3ff]")


def has_emoji(text: str) -> bool:
    return not text.isascii() and emoji.emoji_count(text) > 0  # every emoji is non-ASCII


def spell_emoji(text: str) -> str:
    """``text`` with each emoji replaced by " its name " (a run of one emoji once)."""
    if not has_emoji(text):
        return text
    text = _SKIN_TONES.sub("", text)
    parts: list[str] = []
    position, previous = 0, ""
    for found in emoji.emoji_list(text):
        start, end, char = found["match_start"], found["match_end"], found["emoji"]
        if start == position and char == previous:
            position = end  # the same emoji again, straight after: read once
            continue
        name = emoji.EMOJI_DATA[char]["en"].strip(":").replace("_", " ")
        parts += [text[position:start], f" {name} "]
        position, previous = end, char
    parts.append(text[position:])
    return "".join(parts)
