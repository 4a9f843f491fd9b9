"""Which backend runs a profile's model, and making it (:func:`create_generator`).

Kept apart from :mod:`core.generation.base` (the interface every engine imports) so that
the interface imports no engine: only composition points (the bot, the benchmarks)
import this module.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from core.errors import ConfigError
from core.generation.base import BACKGROUND_MAX_TOKENS, Generator

if TYPE_CHECKING:
    from core.settings import BotProfile, Settings


def engine_for(profile: BotProfile) -> str:
    """The backend that runs a profile's model: ``backend``, or for 'auto' the fastest
    that can: llama.cpp for a GGUF model (the embedded one included) when it is
    installed and no adapter is named, transformers otherwise."""
    model = profile.model
    if model.backend != "auto":
        if model.backend == "llama.cpp" and profile.model.adapter:
            raise ConfigError(
                "a LoRA adapter runs on the transformers backend: set [model] backend = "
                "'transformers' or 'auto'"
            )
        return model.backend
    from core.generation import llamacpp_engine

    gguf = model.model == "embedded" or bool(model.gguf_file) or model.model.endswith(".gguf")
    if gguf and not model.adapter and llamacpp_engine.available():
        return "llama.cpp"
    return "transformers"


TEMPLATE_SLACK = 128
"""Tokens allowed past the dialogue manager's count (template tokens it estimates)."""


def conversation_tokens(profile: BotProfile) -> int:
    """Tokens one conversation's prompt and reply take at most: the context budget, and
    the longer of a reply and a summary (a summary's prompt is fitted to the same room)."""
    reply = max(profile.generation.max_new_tokens, BACKGROUND_MAX_TOKENS)
    return profile.context.budget_tokens + reply + TEMPLATE_SLACK


def create_generator(profile: BotProfile, settings: Settings) -> Generator:
    """The backend a profile asks for (not yet started)."""
    model = profile.model
    backend = engine_for(profile)
    if backend == "llama.cpp":
        from core.generation import models
        from core.generation.llamacpp_engine import LlamaCppGenerator

        source = models.gguf_source(model.model, model.gguf_file)
        if source is None:
            raise ConfigError(
                f"backend 'llama.cpp' runs GGUF files; {model.model!r} is not one "
                "(name a .gguf file, or set gguf_file)"
            )
        return LlamaCppGenerator(
            source.path,
            threads=model.threads,
            context_window=model.context_window,
            conversation_tokens=conversation_tokens(profile),
            parallel=model.parallel,
            queue_limit=model.queue_limit,
            reuse_chunk=model.reuse_chunk,
        )
    if backend == "transformers":
        from core.generation.transformers_engine import TransformersGenerator

        return TransformersGenerator(
            model.model,
            gguf_file=model.gguf_file,
            cache_dir=settings.cache_dir,
            threads=model.threads,
            context_window=model.context_window,
            adapter=profile.adapter_path(),
            merge_adapter=model.merge_adapter,
            device=model.device,
        )
    if model.backend == "openai":
        from core.generation.openai_engine import OpenAIGenerator

        return OpenAIGenerator(
            model.model,
            base_url=model.base_url or settings.openai_base_url,
            api_key=settings.openai_api_key.get_secret_value(),
            timeout_s=model.timeout_s,
            max_retries=model.max_retries,
            context_window=model.context_window,
        )
    raise AssertionError(f"unknown backend {model.backend!r}")  # pydantic rejects it first
