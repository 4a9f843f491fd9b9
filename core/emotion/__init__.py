"""Reading emotion from text: a GoEmotions classifier fine-tuned from all-MiniLM-L6-v2."""

from core.emotion.labels import EKMAN, LABELS, Reading

__all__ = ["EKMAN", "LABELS", "Reading"]
