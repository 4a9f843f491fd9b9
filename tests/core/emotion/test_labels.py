from __future__ import annotations

import pytest

from core.emotion.labels import CIRCUMPLEX, EKMAN, LABELS, reading_from
from core.emotion.training import read_split, scores, tune_group_thresholds, tune_thresholds
from core.errors import ConfigError
from core.training.batching import length_batches as _batches


def probs(**given: float) -> list[float]:
    return [given.get(name, 0.01) for name in LABELS]


def test_the_label_tables_cover_every_label() -> None:
    assert len(LABELS) == 28 and set(EKMAN) == set(LABELS) == set(CIRCUMPLEX)
    assert set(EKMAN.values()) == {
        "anger",
        "disgust",
        "fear",
        "joy",
        "sadness",
        "surprise",
        "neutral",
    }


def test_reading_uses_thresholds_and_groups_to_ekman() -> None:
    thresholds = [0.5] * 28
    reading = reading_from(probs(sadness=0.8, grief=0.6, joy=0.3), thresholds)
    assert reading.predicted == ("sadness", "grief") and reading.ekman == "sadness"
    assert reading.valence < -0.3 and 0 <= reading.arousal <= 1
    happy = reading_from(probs(joy=0.9, excitement=0.7), thresholds)
    assert happy.ekman == "joy" and happy.valence > 0.5 and happy.arousal > 0.6


def test_a_reading_always_predicts_something() -> None:
    reading = reading_from(probs(fear=0.2), [0.5] * 28)
    assert reading.predicted == ("fear",) and reading.ekman == "fear"
    assert set(reading.as_dict()) == {"labels", "predicted", "ekman", "valence", "arousal"}


def test_groups_come_from_the_predicted_labels_or_from_group_thresholds() -> None:
    p = probs(sadness=0.8, annoyance=0.3, approval=0.22)
    mapped = reading_from(p, [0.2] * 28)
    assert mapped.groups == ("sadness", "anger", "joy")  # every predicted label's group
    limits = dict.fromkeys(set(EKMAN.values()), 0.25) | {"joy": 0.35}
    grouped = reading_from(p, [0.2] * 28, limits)
    assert grouped.groups == ("sadness", "anger")  # joy's best label (0.22) is under 0.35
    assert grouped.predicted == mapped.predicted and grouped.ekman == "sadness"
    quiet = reading_from(probs(fear=0.2), [0.5] * 28, dict.fromkeys(limits, 0.5))
    assert quiet.groups == ("fear",)  # none reaches its threshold: the best group


def test_group_thresholds_are_tuned_on_the_group_scores() -> None:
    # joy's labels are weak (neutral leads), yet joy is right: a lower joy threshold finds it
    gold = [[17], [1], [25], [27]]  # joy, amusement (joy), sadness, neutral
    p = [
        probs(joy=0.2, neutral=0.3),
        probs(amusement=0.25, neutral=0.3),
        probs(sadness=0.9),
        probs(neutral=0.8),
    ]
    limits = tune_group_thresholds(p, gold)
    assert set(limits) == set(EKMAN.values()) and limits["joy"] <= 0.2
    assert scores(p, gold, 0.5)["ekman_macro_f1"] < 3 / 7  # joy read as neutral
    assert scores(p, gold, 0.5, limits)["ekman_macro_f1"] == pytest.approx(3 / 7)  # all right


def test_scores_and_thresholds() -> None:
    gold = [[25], [17], [25, 16], [27]]  # sadness, joy, sadness+grief, neutral
    p = [probs(sadness=0.9), probs(joy=0.6), probs(sadness=0.7, grief=0.35), probs(neutral=0.8)]
    perfect = scores(p, gold, 0.3)
    assert perfect["micro_f1"] == 1.0
    # macro averages count labels without examples as 0: 3 of the 7 Ekman groups occur
    assert perfect["ekman_macro_f1"] == pytest.approx(3 / 7)
    strict = scores(p, gold, 0.5)  # grief (0.35) is missed
    assert strict["micro_f1"] < 1.0
    tuned = tune_thresholds(p, gold)
    assert tuned[LABELS.index("grief")] <= 0.35 and scores(p, gold, tuned)["micro_f1"] == 1.0


def test_batches_cover_every_example_once_and_are_deterministic() -> None:
    lengths = [i % 17 + 1 for i in range(1000)]
    batches = _batches(lengths, 32, seed=3)
    assert sorted(i for b in batches for i in b) == list(range(1000))
    assert batches == _batches(lengths, 32, seed=3) != _batches(lengths, 32, seed=4)


def test_read_split_reports_bad_lines(tmp_path) -> None:  # type: ignore[no-untyped-def]
    good = tmp_path / "good.tsv"
    good.write_text("so happy\t17\tid1\nugh\t2,3\tid2\n")
    assert read_split(good) == (["so happy", "ugh"], [[17], [2, 3]])
    bad = tmp_path / "bad.tsv"
    bad.write_text("so happy\tjoy\tid1\n")
    with pytest.raises(ConfigError, match=r"bad\.tsv:1"):
        read_split(bad)
    bad.write_text("so happy\t99\tid1\n")
    with pytest.raises(ConfigError, match="out of range"):
        read_split(bad)
