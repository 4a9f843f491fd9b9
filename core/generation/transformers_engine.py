"""The in-process backend: a Hugging Face causal LM run by transformers on this machine.

Generation runs on one worker thread (torch already uses every core for one
request), streamed back to the event loop piece by piece. Stopping the
consumer (a timeout, a closed connection) stops generation at the next token.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import threading
import warnings
from collections.abc import AsyncIterator, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

from core.errors import BackendError, ConfigError, ModelNotFoundError
from core.generation import models
from core.generation.base import END, Generator, Handoff
from core.types import ChatMessage, Role

if TYPE_CHECKING:
    from core.settings import GenerationSettings

log = logging.getLogger(__name__)


def pick_device(wanted: str) -> str:
    """The torch device for ``wanted`` ('auto', 'cpu', 'cuda', 'cuda:N', 'mps'), checked."""
    import torch

    if wanted == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if wanted.startswith("cuda"):
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        index = int(wanted.partition(":")[2] or 0)
        if index >= count:
            raise ConfigError(
                f"[model] device = {wanted!r}, but torch sees {count} CUDA GPU(s) "
                "(is the CUDA build of torch installed?)"
            )
    if wanted == "mps" and not torch.backends.mps.is_available():
        raise ConfigError("[model] device = 'mps', but torch has no Apple GPU here")
    return wanted


def _half(device: str) -> Any:
    import torch

    if device.startswith("cuda") and torch.cuda.is_bf16_supported():
        return torch.bfloat16
    return torch.float16


class TransformersGenerator(Generator):
    name = "transformers"
    continues_replies = True

    def __init__(
        self,
        model: str = models.EMBEDDED,
        *,
        gguf_file: str | None = None,
        cache_dir: Path,
        threads: int | None = None,
        context_window: int | None = None,
        adapter: Path | None = None,
        merge_adapter: bool = True,
        device: str = "auto",
    ) -> None:
        self.model_name = model
        self._gguf_file = gguf_file
        self._cache_dir = cache_dir
        self._threads = threads
        self._context_window = context_window
        self._adapter = adapter
        self._merge_adapter = merge_adapter
        self._device = device
        self.device = "cpu"
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="generate")
        self.steps_run: list[int] = []
        """Decoding steps of each finished generation, in order (one stops early when its
        reader goes away)."""
        self._model: Any = None
        self._tokenizer: Any = None
        self._stop_ids: list[int] = []

    async def start(self) -> None:
        await asyncio.get_running_loop().run_in_executor(self._executor, self._load)

    def _load(self) -> None:
        import torch
        import transformers
        from transformers import AutoModelForCausalLM, AutoTokenizer

        transformers.logging.set_verbosity_error()
        transformers.utils.logging.disable_progress_bar()
        if self._threads:
            torch.set_num_threads(self._threads)
        device = pick_device(self._device)
        # 32-bit on the CPU (its fast path); 16-bit on a GPU, as inference there usually runs.
        dtype = torch.float32 if device == "cpu" else _half(device)
        where = models.resolve(self.model_name, self._gguf_file, self._cache_dir)
        try:
            tokenizer = AutoTokenizer.from_pretrained(where)
            model: Any = AutoModelForCausalLM.from_pretrained(where, dtype=dtype)
        except OSError as error:
            raise ModelNotFoundError(
                f"cannot load model {self.model_name!r}: {error}".splitlines()[0]
            ) from None
        if self._adapter is not None:
            model = self._with_adapter(model, self._adapter)
        model.to(device)
        model.eval()
        self.device = device
        if not tokenizer.chat_template:
            raise ModelNotFoundError(f"model {self.model_name!r} has no chat template")
        self._tokenizer, self._model = tokenizer, model
        self.context_window = self._context_window or int(
            getattr(model.config, "max_position_embeddings", 2048)
        )
        stops = {tokenizer.eos_token_id, tokenizer.convert_tokens_to_ids("<|im_end|>")}
        config_eos = model.generation_config.eos_token_id
        stops.update(config_eos if isinstance(config_eos, list) else [config_eos])
        unknown = tokenizer.unk_token_id
        self._stop_ids = sorted(i for i in stops if isinstance(i, int) and i != unknown)
        self.per_message_overhead = self.measure_overhead()
        self.late_system = self.probe_late_system(
            lambda messages: str(
                tokenizer.apply_chat_template(
                    [m.as_dict() for m in messages], tokenize=False, add_generation_prompt=True
                )
            )
        )
        log.info(
            "loaded %s from %s on %s (context %d tokens)",
            self.model_name,
            where,
            device,
            self.context_window,
        )

    def _with_adapter(self, model: Any, adapter: Path) -> Any:
        """The base model with a LoRA adapter from `socialbot train chat` (merged if asked)."""
        from peft import PeftModel

        if not adapter.exists():
            raise ModelNotFoundError(
                f"the adapter folder {adapter} does not exist: train one with "
                f"`socialbot train chat --out {adapter}` (docs/fine-tuning.md)"
            )
        if not (adapter / "adapter_config.json").is_file():
            raise ModelNotFoundError(
                f"{adapter} is not a LoRA adapter folder (no adapter_config.json)"
            )
        base = models.trained_base(adapter)
        if base is not None and base[0] != self.model_name:
            raise ModelNotFoundError(
                f"the adapter in {adapter} was trained on {base[0]!r}, not on {self.model_name!r}: "
                "set [model] model to the adapter's base"
            )
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", ".*is_gradient_checkpointing.*", FutureWarning)
            model = PeftModel.from_pretrained(model, str(adapter))
        log.info(
            "loaded the LoRA adapter %s%s", adapter, " (merged)" if self._merge_adapter else ""
        )
        return model.merge_and_unload() if self._merge_adapter else model

    async def close(self) -> None:
        self._executor.shutdown(wait=True, cancel_futures=True)
        self._model = self._tokenizer = None

    def _require(self) -> Any:
        if self._tokenizer is None:
            raise BackendError("the transformers generator was not started")
        return self._tokenizer

    def count_text(self, text: str) -> int:
        return len(self._require().encode(text, add_special_tokens=False))

    def count_tokens(self, messages: Sequence[ChatMessage]) -> int:
        return len(models.chat_ids(self._require(), [m.as_dict() for m in messages], True))

    async def stream(
        self, messages: Sequence[ChatMessage], params: GenerationSettings
    ) -> AsyncIterator[str]:
        self._require()
        handoff = Handoff()
        cancel = threading.Event()
        generate = functools.partial(self._generate, messages, params, handoff.emit, cancel)
        job = asyncio.get_running_loop().run_in_executor(
            self._executor, _on_worker, generate, handoff.emit, cancel
        )
        try:
            async for piece in handoff.pieces():
                yield piece
            await job
        finally:
            cancel.set()

    def _generate(
        self,
        messages: Sequence[ChatMessage],
        params: GenerationSettings,
        emit: Any,
        cancel: threading.Event,
    ) -> None:
        import torch
        from transformers import StoppingCriteria, StoppingCriteriaList, TextStreamer

        tokenizer, model = self._tokenizer, self._model

        class Streamer(TextStreamer):
            def on_finalized_text(self, text: str, stream_end: bool = False) -> None:
                emit(text)

        steps = self.steps_run
        steps.append(0)

        class Cancelled(StoppingCriteria):
            def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
                steps[-1] += 1
                stop = cancel.is_set()
                return torch.full((input_ids.shape[0],), stop, device=input_ids.device)

        started = bool(messages) and messages[-1].role is Role.ASSISTANT
        inputs = tokenizer.apply_chat_template(
            [m.as_dict() for m in messages],
            add_generation_prompt=not started,
            continue_final_message=started,  # the reply is begun: go on from its last word
            return_tensors="pt",
            return_dict=True,
        ).to(model.device)
        if params.seed is not None:
            torch.manual_seed(params.seed)
        sampling = params.temperature > 0
        options: dict[str, Any] = {
            "max_new_tokens": params.max_new_tokens,
            "do_sample": sampling,
            "repetition_penalty": params.repetition_penalty,
            "eos_token_id": self._stop_ids,
            "pad_token_id": tokenizer.pad_token_id or self._stop_ids[0],
        }
        if sampling:
            options.update(temperature=params.temperature, top_p=params.top_p, top_k=params.top_k)
        with torch.inference_mode():
            model.generate(
                **inputs,
                **options,
                streamer=Streamer(tokenizer, skip_prompt=True, skip_special_tokens=True),
                stopping_criteria=StoppingCriteriaList([Cancelled()]),
            )


def _on_worker(generate: Callable[[], None], emit: Any, cancel: threading.Event) -> None:
    """On the worker thread: run ``generate`` unless its reader left before it began,
    handing its error (if any) and then the end to ``emit``."""
    try:
        if not cancel.is_set():
            generate()
    except BaseException as error:  # handed to the event loop, which raises it
        emit(error)
    finally:
        emit(END)
