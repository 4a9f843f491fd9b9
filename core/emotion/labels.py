"""GoEmotions' 28 labels, the authors' Ekman grouping, and a valence/arousal estimate."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

LABELS: tuple[str, ...] = (
    "admiration",
    "amusement",
    "anger",
    "annoyance",
    "approval",
    "caring",
    "confusion",
    "curiosity",
    "desire",
    "disappointment",
    "disapproval",
    "disgust",
    "embarrassment",
    "excitement",
    "fear",
    "gratitude",
    "grief",
    "joy",
    "love",
    "nervousness",
    "optimism",
    "pride",
    "realization",
    "relief",
    "remorse",
    "sadness",
    "surprise",
    "neutral",
)

# Demszky et al. (2020), ekman_mapping.json; neutral maps to itself.
EKMAN_GROUPS: dict[str, tuple[str, ...]] = {
    "anger": ("anger", "annoyance", "disapproval"),
    "disgust": ("disgust",),
    "fear": ("fear", "nervousness"),
    "joy": (
        "joy",
        "amusement",
        "approval",
        "excitement",
        "gratitude",
        "love",
        "optimism",
        "relief",
        "pride",
        "admiration",
        "desire",
        "caring",
    ),
    "sadness": ("sadness", "disappointment", "embarrassment", "grief", "remorse"),
    "surprise": ("surprise", "realization", "confusion", "curiosity"),
    "neutral": ("neutral",),
}
EKMAN: dict[str, str] = {label: group for group, labels in EKMAN_GROUPS.items() for label in labels}

# Where each emotion sits on Russell's circumplex: valence in [-1, 1], arousal in [0, 1].
# Hand-set approximations (after the NRC VAD lexicon's ratings of the emotion words); a
# reading's estimate is their average weighted by the label probabilities.
CIRCUMPLEX: dict[str, tuple[float, float]] = {
    "admiration": (0.7, 0.5),
    "amusement": (0.8, 0.6),
    "anger": (-0.8, 0.85),
    "annoyance": (-0.6, 0.6),
    "approval": (0.6, 0.35),
    "caring": (0.7, 0.4),
    "confusion": (-0.2, 0.5),
    "curiosity": (0.3, 0.6),
    "desire": (0.5, 0.7),
    "disappointment": (-0.6, 0.35),
    "disapproval": (-0.6, 0.45),
    "disgust": (-0.8, 0.6),
    "embarrassment": (-0.5, 0.6),
    "excitement": (0.8, 0.9),
    "fear": (-0.8, 0.85),
    "gratitude": (0.8, 0.45),
    "grief": (-0.9, 0.4),
    "joy": (0.9, 0.7),
    "love": (0.9, 0.6),
    "nervousness": (-0.5, 0.75),
    "optimism": (0.7, 0.5),
    "pride": (0.7, 0.6),
    "realization": (0.1, 0.45),
    "relief": (0.6, 0.25),
    "remorse": (-0.6, 0.4),
    "sadness": (-0.8, 0.3),
    "surprise": (0.2, 0.8),
    "neutral": (0.0, 0.2),
}


@dataclass(frozen=True, slots=True)
class Reading:
    """The emotion read from one message."""

    labels: Mapping[str, float]
    """Probability of each of the 28 labels."""
    predicted: tuple[str, ...]
    """Labels over their tuned thresholds (the most likely one if none is)."""
    ekman: str
    """The dominant Ekman group: the one holding most of the predicted labels' probability."""
    valence: float
    arousal: float
    groups: tuple[str, ...] = ()
    """Every Ekman group read in the text (what `eval emotion --labels ekman` scores)."""
    extra: Mapping[str, object] = field(default_factory=dict)

    def as_dict(self) -> dict[str, object]:
        return {
            "labels": {k: round(v, 4) for k, v in self.labels.items()},
            "predicted": list(self.predicted),
            "ekman": self.ekman,
            "valence": round(self.valence, 3),
            "arousal": round(self.arousal, 3),
        }


def group_scores(probabilities: Sequence[float]) -> dict[str, float]:
    """Each Ekman group's score: the probability of its most likely label."""
    scores: dict[str, float] = {}
    for name, p in zip(LABELS, probabilities, strict=True):
        group = EKMAN[name]
        scores[group] = max(p, scores.get(group, 0.0))
    return scores


def reading_from(
    probabilities: list[float],
    thresholds: list[float],
    group_thresholds: Mapping[str, float] | None = None,
) -> Reading:
    """The reading of one text from its label probabilities.

    ``group_thresholds`` (tuned on dev, per Ekman group) decide the groups: a group is
    read when its most likely label reaches the group's threshold (the best-scoring
    group when none does). Without them the groups are those of the predicted labels.
    """
    labels = dict(zip(LABELS, probabilities, strict=True))
    predicted = [
        name for name, p, t in zip(LABELS, probabilities, thresholds, strict=True) if p >= t
    ]
    if not predicted:
        predicted = [max(labels, key=labels.__getitem__)]
    predicted.sort(key=labels.__getitem__, reverse=True)
    # The Ekman group with the most probability mass among the predicted labels.
    mass: dict[str, float] = {}
    for name in predicted:
        mass[EKMAN[name]] = mass.get(EKMAN[name], 0.0) + labels[name]
    ekman = max(mass, key=mass.__getitem__)
    total = sum(probabilities) or 1.0
    valence = sum(labels[n] * CIRCUMPLEX[n][0] for n in LABELS) / total
    arousal = sum(labels[n] * CIRCUMPLEX[n][1] for n in LABELS) / total
    if group_thresholds:
        score = group_scores(probabilities)
        groups = [g for g, p in score.items() if p >= group_thresholds[g]] or [
            max(score, key=score.__getitem__)
        ]
        groups.sort(key=score.__getitem__, reverse=True)
    else:
        groups = list(dict.fromkeys(EKMAN[name] for name in predicted))
    return Reading(labels, tuple(predicted), ekman, valence, arousal, tuple(groups))
