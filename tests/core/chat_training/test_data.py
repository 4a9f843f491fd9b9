"""Reading the fine-tuning formats, and the loss mask: the bot's tokens and nothing else."""

from __future__ import annotations

import itertools
import json
from pathlib import Path
from typing import Any

import pytest

from core.errors import ConfigError
from core.generation import models
from core.training.chat.data import encode, read_conversations, split

SAMPLE = Path(__file__).parents[2] / "data" / "persona_chat_sample.csv"


@pytest.fixture(scope="module")
def tokenizer(model_cache: Path) -> Any:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(models.resolve(models.EMBEDDED, None, model_cache))


def test_persona_chat_gives_one_conversation_per_speaker_as_the_bot() -> None:
    both = read_conversations(SAMPLE)
    second = read_conversations(SAMPLE, bot_speaker="2")
    assert len(both) == 8 and len(second) == 4
    first = both[0]
    assert first[0]["role"] == "system" and "I run a dog obedience school." in first[0]["content"]
    assert [m["role"] for m in first[1:4]] == ["user", "assistant", "user"]
    roles = [m["role"] for m in first[1:]]
    assert all(a != b for a, b in itertools.pairwise(roles))  # turns alternate
    # Speaker 1 opens, so when speaker 1 is the bot a neutral user turn comes first
    # and the opening line is the first thing the bot learns to say.
    assert first[1] == {"role": "user", "content": "Hi!"}
    assert first[2]["content"].startswith("Hi, I'm [User 1's name].")
    # With speaker 2 as the bot, speaker 1's opening line is the user's first turn.
    assert second[0][1]["content"].startswith("Hi, I'm [User 1's name].")
    assert "My parents are living in bora bora." in second[0][0]["content"]


def test_jsonl_reads_messages_and_names_the_bad_line(tmp_path: Path) -> None:
    good = {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]}
    path = tmp_path / "chats.jsonl"
    path.write_text(json.dumps(good) + "\n\n" + json.dumps({**good, "extra": 1}) + "\n")
    assert read_conversations(path) == [good["messages"], good["messages"]]
    path.write_text(json.dumps(good) + "\n{not json\n")
    with pytest.raises(ConfigError, match=r"chats.jsonl:2: not JSON"):
        read_conversations(path)
    path.write_text(json.dumps({"messages": [{"role": "user", "content": "only me"}]}) + "\n")
    with pytest.raises(ConfigError, match=r":1: the conversation has no assistant turn"):
        read_conversations(path)
    path.write_text(json.dumps({"messages": [{"role": "bot", "content": "?"}]}) + "\n")
    with pytest.raises(ConfigError, match=r":1: each message needs a role"):
        read_conversations(path)
    with pytest.raises(ConfigError, match="unknown data format"):
        read_conversations(tmp_path / "chats.txt")


def test_split_holds_out_whole_conversations_reproducibly() -> None:
    conversations = [[{"role": "assistant", "content": str(i)}] for i in range(20)]
    train, dev = split(conversations, 0.25, seed=1)
    assert len(dev) == 5 and len(train) == 15
    assert sorted(c[0]["content"] for c in train + dev) == sorted(str(i) for i in range(20))
    assert split(conversations, 0.25, seed=1) == (train, dev)
    assert split(conversations, 0.25, seed=2) != (train, dev)


def test_labels_cover_exactly_the_bots_turns(tokenizer: Any) -> None:
    conversation = [
        {"role": "system", "content": "You are Sol."},
        {"role": "user", "content": "I adopted a kitten today!"},
        {"role": "assistant", "content": "Congratulations! What's its name?"},
        {"role": "user", "content": "Miso."},
        {"role": "assistant", "content": "Miso is a lovely name."},
    ]
    [example] = encode(tokenizer, conversation, max_length=512)
    assert len(example.labels) == len(example.input_ids)
    labelled = [
        t for t, label in zip(example.input_ids, example.labels, strict=True) if label != -100
    ]
    assert all(
        label in (-100, token)
        for token, label in zip(example.input_ids, example.labels, strict=True)
    )
    text = tokenizer.decode(labelled)
    assert text == (
        "Congratulations! What's its name?<|im_end|>\nMiso is a lovely name.<|im_end|>\n"
    )
    assert "kitten" not in text and "Sol" not in text  # user and system are context only
    assert tokenizer.decode(example.input_ids).startswith("<|im_start|>system\nYou are Sol.")


def test_long_conversations_are_cut_at_turns_with_the_system_prompt_kept(tokenizer: Any) -> None:
    conversation = read_conversations(SAMPLE, bot_speaker="2")[0]
    whole = encode(tokenizer, conversation, max_length=4096)
    parts = encode(tokenizer, conversation, max_length=160)
    assert len(whole) == 1 and len(parts) > 2
    assert all(len(p.input_ids) <= 160 for p in parts)
    system = tokenizer.decode(whole[0].input_ids).split("<|im_end|>")[0]
    assert all(tokenizer.decode(p.input_ids).startswith(system) for p in parts)
    # Every bot turn is learnt once, whichever way the conversation is cut.
    assert sum(p.trained_tokens for p in parts) == whole[0].trained_tokens
