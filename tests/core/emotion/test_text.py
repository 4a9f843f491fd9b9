"""Emoji spelled out by name, for the network that reads messages with emoji."""

from __future__ import annotations

from pathlib import Path

import pytest

from core.emotion.classifier import reads_emoji_names, write_input
from core.emotion.text import has_emoji, spell_emoji
from core.errors import ModelNotFoundError


def test_text_without_emoji_is_left_as_it_is() -> None:
    for text in ("plain ascii :) <3", "naïve café — “quotes”", "日本語のテキスト", ""):
        assert not has_emoji(text)
        assert spell_emoji(text) is text


def test_each_emoji_is_spelled_out_by_its_name() -> None:
    assert has_emoji("so sad 😢")
    assert spell_emoji("so sad 😢") == "so sad  crying face "
    assert spell_emoji("❤️ you") == " red heart  you"


def test_a_run_of_one_emoji_reads_once_and_skin_tones_are_dropped() -> None:
    assert spell_emoji("OMG 😂😂😂😂") == "OMG  face with tears of joy "
    assert spell_emoji("👍🏻👍🏽") == " thumbs up "
    # the same emoji apart, or different ones together, each count
    assert spell_emoji("😂 no 😂") == " face with tears of joy  no  face with tears of joy "
    assert spell_emoji("😢😭") == " crying face  loudly crying face "


def test_sequences_are_one_emoji() -> None:
    assert spell_emoji("🤷🏻\u200d♀️") == " woman shrugging "
    assert spell_emoji("🏳️\u200d🌈") == " rainbow flag "


def test_a_weights_folder_says_how_its_network_reads(tmp_path: Path) -> None:
    assert not reads_emoji_names(tmp_path)  # folders from before the option read raw text
    write_input(tmp_path, emoji_names=True)
    assert reads_emoji_names(tmp_path)
    write_input(tmp_path, emoji_names=False)
    assert not reads_emoji_names(tmp_path)
    (tmp_path / "input.json").write_text('{"emoji": "pictures"}')
    with pytest.raises(ModelNotFoundError, match=r"input\.json"):
        reads_emoji_names(tmp_path)
    (tmp_path / "input.json").write_text("[1]")
    with pytest.raises(ModelNotFoundError, match=r"input\.json"):
        reads_emoji_names(tmp_path)
