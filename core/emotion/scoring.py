"""``socialbot eval emotion``: score the classifier on ``text<TAB>label,label`` lines."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from core._files import read_lines
from core.emotion.classifier import EmotionClassifier
from core.emotion.labels import EKMAN, LABELS
from core.errors import ConfigError


def read_named(path: Path) -> tuple[list[str], list[set[str]]]:
    texts, gold = [], []
    lines = read_lines(path)
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        text, sep, names = line.rpartition("\t")
        labels = {n.strip() for n in names.split(",") if n.strip()}
        unknown = labels - set(LABELS)
        if not sep or not labels or unknown:
            raise ConfigError(
                f"{path}:{number}: expected text<TAB>label[,label...] with "
                f"GoEmotions label names (unknown: {', '.join(sorted(unknown))})"
            )
        texts.append(text)
        gold.append(labels)
    return texts, gold


def evaluate_file(classifier: EmotionClassifier, path: Path, labels: str) -> dict[str, Any]:
    from sklearn.metrics import f1_score
    from sklearn.preprocessing import MultiLabelBinarizer

    texts, gold = read_named(path)
    readings = classifier.read_now(texts)
    predicted = [set(r.predicted) for r in readings]
    names: list[str] = list(LABELS)
    if labels == "ekman":  # the groups a reading gives (see reading_from)
        gold = [{EKMAN[n] for n in g} for g in gold]
        predicted = [set(r.groups) for r in readings]
        names = sorted(set(EKMAN.values()))
    binarize = MultiLabelBinarizer(classes=names)
    truth, guess = binarize.fit_transform(gold), binarize.transform(predicted)
    per_label = f1_score(truth, guess, average=None, zero_division=0)
    return {
        "examples": len(texts),
        "labels": labels,
        "accuracy": round(
            sum(g == p for g, p in zip(gold, predicted, strict=True)) / max(len(texts), 1), 4
        ),
        "macro_f1": round(float(f1_score(truth, guess, average="macro", zero_division=0)), 4),
        "micro_f1": round(float(f1_score(truth, guess, average="micro", zero_division=0)), 4),
        "per_label": {n: round(float(f), 4) for n, f in zip(names, per_label, strict=True)},
    }
