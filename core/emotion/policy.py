"""The emotion policy: how a reading (and the person's recent trajectory) changes a reply.

Four levers, each configurable per bot profile (``[emotion]``):
- guidance for the model in the system prompt (acknowledge feelings before advice
  when someone is sad or afraid, stay calm and never argue with anger, share joy);
- an opening acknowledgement for sadness, fear and anger: the reply starts with it and
  the model continues from there (engines that can continue a reply; small models
  follow a started sentence far better than an instruction);
- generation settings (calmer sampling and shorter replies for strong negative feelings);
- a reaction emoji on the user's message, where the platform has reactions.
"""

from __future__ import annotations

from dataclasses import dataclass

from core.emotion.history import Trajectory
from core.emotion.labels import EKMAN, Reading
from core.settings import EmotionSettings, GenerationSettings

GUIDANCE: dict[str, str] = {
    "sadness": "The person seems sad. First acknowledge how they feel, warmly and in a "
    "sentence or two; do not rush to fix things or give a list of advice.",
    "fear": "The person seems worried or afraid. Acknowledge the feeling, be calm and "
    "reassuring, and offer at most one small, concrete step.",
    "anger": "The person seems angry or frustrated. Stay calm, acknowledge the frustration, "
    "do not argue, lecture or defend yourself, and keep it short.",
    "joy": "The person seems happy. Share in their joy warmly and ask about it.",
    "surprise": "The person seems surprised. Respond with curiosity and interest.",
    "disgust": "The person seems put off or disgusted. Acknowledge it without judging them.",
}
REACTIONS: dict[str, str] = {"joy": "🎉", "sadness": "🫂", "fear": "🤗", "surprise": "😮"}
# Chosen on the GoEmotions dev split among plain acknowledgements written beforehand
# (bench/opening_candidates.json; docs/emotion.md says how).
OPENINGS: dict[str, str] = {
    "sadness": "That sounds really hard, and I'm here for you.",
    "fear": "You're not alone in this.",
    "anger": "It makes sense that you'd feel that way.",
}
CALM = {"sadness", "fear", "anger"}


@dataclass(frozen=True, slots=True)
class Decision:
    guidance: str
    params: GenerationSettings
    reaction: str
    opening: str = ""
    """The reply starts with this; the model continues it (empty: nothing is primed)."""


def group_of(reading: Reading) -> str:
    """The reading's Ekman group, except that sadness, fear or anger among the predicted
    labels wins: missing someone's distress costs more than missing their surprise."""
    concerning = [name for name in reading.predicted if EKMAN[name] in CALM]
    if concerning:
        return EKMAN[max(concerning, key=lambda name: reading.labels[name])]
    return reading.ekman


def decide(
    reading: Reading | None,
    trajectory: Trajectory,
    params: GenerationSettings,
    settings: EmotionSettings,
) -> Decision:
    """What to change for this reply (nothing when the policy is off or the reading neutral)."""
    if reading is None or not settings.policy:
        return Decision("", params, "")
    group = group_of(reading)
    lines = []
    text = settings.guidance.get(group, GUIDANCE.get(group, ""))
    if text:
        lines.append(text)
    if trajectory.persistent("sadness") and group in ("sadness", "fear", "neutral"):
        lines.append("They have seemed low for a while now: gently check in on how they are.")
    elif trajectory.trend < -0.5:
        lines.append("Their mood seems to be getting worse: be especially gentle.")
    if group in CALM:
        params = params.model_copy(
            update={
                "temperature": min(params.temperature, settings.calm_temperature),
                "max_new_tokens": min(params.max_new_tokens, settings.calm_max_new_tokens),
            }
        )
    reaction = settings.reactions.get(group, REACTIONS.get(group, "")) if settings.react else ""
    opening = settings.openings.get(group, OPENINGS.get(group, "")) if settings.open else ""
    return Decision(" ".join(lines), params, reaction, opening)
