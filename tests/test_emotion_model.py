"""The emotion classifier with real weights: training on a little data, and the shipped model.

Slow (loads the encoder, trains for a few steps): marked ``model``.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from core.emotion.classifier import EMOJI_EXPERT, WEIGHTS, EmotionClassifier, reads_emoji_names
from core.emotion.labels import LABELS
from core.emotion.training import TrainConfig, train

pytestmark = pytest.mark.model
DATA = Path(__file__).resolve().parent.parent / "data" / "goemotions"


def test_a_short_training_run_learns_saves_and_resumes(tmp_path: Path) -> None:
    config = TrainConfig(
        data=DATA,
        out=tmp_path / "run",
        epochs=1,
        batch_size=16,
        limit=160,
        lr=2e-3,
        checkpoint_every=5,
    )
    first = train(config)
    assert first["best_epoch"] == 1
    for name in (
        "adapter_model.safetensors",
        "adapter_config.json",
        "head.safetensors",
        "thresholds.json",
        "ekman_thresholds.json",
        "training.json",
        "checkpoint.pt",
    ):
        assert (tmp_path / "run" / name).is_file(), name
    size = sum(p.stat().st_size for p in (tmp_path / "run").glob("*.safetensors"))
    assert size < 10 * 2**20  # an adapter and a head, not a copy of the encoder

    # asking for a second epoch resumes after the first instead of starting over
    second = train(TrainConfig(**{**config.__dict__, "epochs": 2}))
    history = second["dev_history"]
    assert [h["epoch"] for h in history] == [1, 2]
    assert history[1]["train_loss"] < history[0]["train_loss"]

    reading = EmotionClassifier(tmp_path / "run").read_now(["thank you so much!"])[0]
    assert set(reading.labels) == set(LABELS)

    # --tune-only tunes the thresholds of the weights in OUT again, keeping the record
    (tmp_path / "run" / "ekman_thresholds.json").unlink()
    again = train(TrainConfig(**{**config.__dict__, "tune_only": True}))
    assert (tmp_path / "run" / "ekman_thresholds.json").is_file()
    assert again["dev_history"] == history and again["test"] == second["test"]


def test_training_with_emoji_names_records_it_for_reading_and_tuning(tmp_path: Path) -> None:
    from core.emotion.text import has_emoji

    data = tmp_path / "data"  # small splits, half of each with emoji
    data.mkdir()
    for split in ("train", "dev"):
        lines = (DATA / f"{split}.tsv").read_text().splitlines(True)
        emoji = [line for line in lines if has_emoji(line)][:24]
        (data / f"{split}.tsv").write_text("".join(emoji + lines[:24]))
    config = TrainConfig(
        data=data, out=tmp_path / "run", epochs=2, batch_size=8, lr=3e-3, emoji_names=True
    )
    report = train(config)
    assert reads_emoji_names(tmp_path / "run")
    assert report["config"]["emoji_names"] is True
    # --tune-only on those weights spells emoji out as they were trained, without the flag
    again = train(TrainConfig(data=data, out=tmp_path / "run", tune_only=True))
    assert again["dev_tuned"] == report["dev_tuned"]
    (tmp_path / "run" / "input.json").write_text('{"emoji": "raw"}')  # and raw text differs
    raw = train(TrainConfig(data=data, out=tmp_path / "run", tune_only=True))
    assert raw["dev_tuned"] != report["dev_tuned"]


@pytest.fixture(scope="module")
def shipped() -> EmotionClassifier:
    classifier = EmotionClassifier()
    classifier.load()
    return classifier


@pytest.fixture(scope="module")
def without_emoji_network(tmp_path_factory: pytest.TempPathFactory) -> EmotionClassifier:
    folder = tmp_path_factory.mktemp("main-only")
    for path in WEIGHTS.iterdir():
        if path.is_file():
            shutil.copy(path, folder / path.name)
    return EmotionClassifier(folder)


def test_messages_of_emoji_are_read_by_the_network_trained_on_their_names(
    shipped: EmotionClassifier, without_emoji_network: EmotionClassifier
) -> None:
    assert (WEIGHTS / EMOJI_EXPERT / "adapter_config.json").is_file()
    texts = ["😢😢", "😡", "😱", "😂😂😂"]
    assert [r.ekman for r in shipped.read_now(texts)] == ["sadness", "anger", "fear", "joy"]
    # the main network has no emoji in its vocabulary: to it they are all one unknown token
    assert {r.ekman for r in without_emoji_network.read_now(texts)} == {"neutral"}


def test_routing_keeps_the_order_and_leaves_text_without_emoji_alone(
    shipped: EmotionClassifier, without_emoji_network: EmotionClassifier
) -> None:
    texts = ["😢😢", "Yes!! I passed, I'm so happy!", "so angry right now 😡", "ok."]
    together = shipped.read_now(texts)
    alone = [shipped.read_now([text])[0] for text in texts]
    plain = without_emoji_network.read_now([texts[1], texts[3]])
    pairs = [*zip(together, alone, strict=True), *zip(together[1::2], plain, strict=True)]
    for one, other in pairs:
        # the same up to padding's rounding in a batch
        assert one.labels == pytest.approx(other.labels, abs=1e-5)
        assert (one.predicted, one.groups) == (other.predicted, other.groups)


def test_a_large_batch_is_run_by_length_but_read_in_order(shipped: EmotionClassifier) -> None:
    lines = (DATA / "test_named.tsv").read_text().splitlines()[:40]
    texts = [line.split("\t")[0] for line in lines]
    assert len({len(text) for text in texts}) > 20  # lengths vary: the order changes
    together = shipped.read_now(texts)
    for text, reading in zip(texts, together, strict=True):
        assert reading.labels == pytest.approx(shipped.read_now([text])[0].labels, abs=1e-5)


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "core", *args],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )


def test_the_shipped_classifier_reads_emotions() -> None:
    assert (WEIGHTS / "adapter_config.json").is_file()
    result = run("emotion", "My grandmother died last night and I can't stop crying.")
    assert result.returncode == 0, result.stderr
    reading = json.loads(result.stdout)
    assert set(reading) == {"labels", "predicted", "ekman", "valence", "arousal"}
    assert len(reading["labels"]) == 28 and reading["ekman"] == "sadness"
    assert reading["valence"] < 0
    happy = json.loads(run("emotion", "Yes!! I passed, I'm so happy!").stdout)
    assert happy["ekman"] == "joy" and happy["valence"] > 0


def test_eval_emotion_on_part_of_the_test_split(tmp_path: Path) -> None:
    sample = tmp_path / "sample.tsv"
    sample.write_text("".join((DATA / "test_named.tsv").read_text().splitlines(True)[:600]))
    fine = json.loads(run("eval", "emotion", "--data", str(sample)).stdout)
    coarse = json.loads(run("eval", "emotion", "--data", str(sample), "--labels", "ekman").stdout)
    assert fine["examples"] == 600 and len(fine["per_label"]) == 28
    assert set(coarse["per_label"]) == {
        "anger",
        "disgust",
        "fear",
        "joy",
        "neutral",
        "sadness",
        "surprise",
    }
    assert fine["macro_f1"] > FLOOR_28 and coarse["macro_f1"] > FLOOR_EKMAN
    assert 0 < fine["accuracy"] <= 1 and fine["micro_f1"] > fine["macro_f1"] - 0.2


def test_bad_eval_data_is_one_clear_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.tsv"
    bad.write_text("hello\tjoyful\n")
    result = run("eval", "emotion", "--data", str(bad))
    assert result.returncode == 2
    assert "bad.tsv:1" in result.stderr and "joyful" in result.stderr


# Floors well under the full test split's results (docs/emotion.md), for a 600-line sample.
FLOOR_28 = 0.35
FLOOR_EKMAN = 0.5
