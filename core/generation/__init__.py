"""Language-model backends behind one small interface (:class:`Generator`)."""

from core.generation.base import Generator, create_generator

__all__ = ["Generator", "create_generator"]
