"""socialbot's core: the turn model, the pipeline, storage, dialogue and generation."""

__version__ = "0.1.0"
