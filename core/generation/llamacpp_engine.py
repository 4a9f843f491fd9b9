"""The fast local backend: llama.cpp (``llama-cpp-python``) running a GGUF file, with
continuous batching across conversations.

One llama.cpp context holds ``parallel`` sequences (slots), each with its own part of
the KV cache. A worker thread runs the decoding loop: every step it puts one token of
each conversation that is generating, and a chunk of the prompt of each that is still
reading its prompt, into a single batch, decodes the batch once, and samples each
conversation's next token from its own logits with its own sampler. So conversations
that arrive together are generated together (a step for eight costs little more than
a step for one on a small model), each streams to its own user, and a newcomer's prompt
is read while the others keep generating.

Past ``parallel`` conversations, requests wait in a queue (first come, first served);
past ``queue_limit`` waiting, :class:`BusyError` is raised at once, and the pipeline
answers with a short "busy" reply instead of letting memory grow.

A slot keeps its tokens in the KV cache after a reply. A new request takes the free slot
that holds the most of its prompt, if it keeps at least half of what that slot holds
(its own conversation's last turn; anyone else would throw another conversation's cache
away, and takes an empty or the least recently used slot instead), and reads only the
rest: the longest common prefix, and then, past it, any run of at least ``reuse_chunk``
tokens found further on in the slot's cache, which is moved into place in the KV cache
(``llama_memory_seq_rm`` and ``llama_memory_seq_add``; what llama.cpp's server calls
cache reuse). So the next turn of a conversation reads only what is new, even when
something in the middle of its prompt changed: the note before the last message went, or
the window dropped its oldest turns. A moved run keeps what it computed when it was
first read (it saw the tokens that have since gone), a small approximation that
llama.cpp's server makes too; ``reuse_chunk=0`` turns it off and keeps only exact
prefixes. Moving is not free: at the next decode llama.cpp turns the keys of every cell
of the whole cache, used or not, to their new positions (about 9 microseconds a cell for
the embedded model here: 140 ms for four 4,096-token slots, 60 ms for four of 1,792). So
a slot is as large as a conversation needs (``conversation_tokens``: the dialogue
manager's budget and the reply, rounded up to 256), not the model's whole window.

Conversations share what they have in common. Every conversation of a bot starts with
the same persona, so a request can take its start from another slot's cache (a copy of
that slot's part of the KV cache, ``llama_memory_seq_cp``) when that holds more of its
prompt than any free slot does; and requests that arrive together with the same start
read it once: the later ones wait for the first to read it, then copy it.

Background work (summaries) waits: it is admitted after waiting replies, and pauses while
a reply's prompt is being read, so it does not delay anyone's first token.
"""

from __future__ import annotations

import asyncio
import codecs
import collections
import ctypes
import logging
import os
import threading
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from core.errors import BackendError, BusyError, ModelNotFoundError
from core.generation.base import END, Generator, Handoff
from core.types import ChatMessage, Role

if TYPE_CHECKING:
    from core.settings import GenerationSettings

log = logging.getLogger(__name__)

PREFILL_CHUNK = 256
"""Prompt tokens read per step per request: a long prompt never stalls the others long."""

BACKGROUND_CHUNK = 32
"""The same for background work (summaries). A reply that arrives waits for the step in
flight: 256 tokens deep in a conversation take about 0.9 s here, 32 about 0.17 s, for
about 1.5 times the work in all (measured on this 2-core CPU)."""

SHARE_MIN = 32
"""Copy another slot's cache only when it saves reading at least this many tokens: the copy
moves the whole of that slot's cache buffer (a few milliseconds), reading 32 tokens takes
longer."""


def available() -> bool:
    """Whether llama-cpp-python is installed (the default engine needs it)."""
    import importlib.util

    return importlib.util.find_spec("llama_cpp") is not None


@dataclass(eq=False)
class _Request:
    tokens: list[int]
    params: GenerationSettings
    emit: Callable[[object], None]
    cancel: threading.Event
    background: bool = False
    slot: int = -1
    fed: int = 0  # prompt tokens already in the KV cache
    produced: int = 0
    last: int = -1  # the sampled token still to be fed
    sampler: Any = None
    share: tuple[_Request, int] | None = None  # waiting for that request to read this many
    decoder: Any = field(default_factory=lambda: codecs.getincrementaldecoder("utf-8")("replace"))

    @property
    def prefilling(self) -> bool:
        return self.fed < len(self.tokens)


@dataclass(eq=False)
class _Slot:
    seq: int
    cached: list[int] = field(default_factory=list)
    busy: bool = False
    used: int = 0  # when it was last taken (a counter): the least recent goes first


def _common_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    n = min(len(a), len(b))
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return i


Move = tuple[int, int, int]
"""(to, from, length): cached tokens at positions [from, from + length) go to ``to``."""


def plan_reuse(cached: Sequence[int], tokens: Sequence[int], chunk: int) -> tuple[int, list[Move]]:
    """How much of ``tokens`` a slot holding ``cached`` can keep: the common prefix, then
    runs of at least ``chunk`` tokens found in order further on in ``cached`` (none when
    ``chunk`` is 0). Returns the tokens kept and the moves that put the runs in place.
    The last prompt token is always left to read (its logits give the first reply token).
    """
    limit = len(tokens) - 1
    kept = min(_common_prefix(cached, tokens), max(limit, 0))
    moves: list[Move] = []
    if chunk <= 0:
        return kept, moves
    at = kept  # where the cache is being searched
    while at < len(cached) and kept < limit:
        n = 0
        while at + n < len(cached) and kept + n < limit and cached[at + n] == tokens[kept + n]:
            n += 1
        if n >= chunk:
            moves.append((kept, at, n))
            kept += n
            at += n
        else:
            at += 1
    return kept, moves


SLOT_STEP = 256


def slot_size(conversation_tokens: int | None, trained: int) -> int:
    """Tokens of KV cache per conversation: what it needs, rounded up to ``SLOT_STEP``
    (4,096 when not told), never past the window the model was trained on."""
    trained = trained if trained > 0 else 4096  # a file that does not say
    needed = conversation_tokens or 4096
    return min(trained, -(-needed // SLOT_STEP) * SLOT_STEP)


class LlamaCppGenerator(Generator):
    name = "llama.cpp"
    continues_replies = True
    shares_cpu_with_torch = False

    def __init__(
        self,
        path: Path,
        *,
        threads: int | None = None,
        context_window: int | None = None,
        conversation_tokens: int | None = None,
        parallel: int = 4,
        queue_limit: int = 64,
        reuse_chunk: int = 16,
    ) -> None:
        self.path = path
        self.reuse_chunk = max(0, reuse_chunk)
        self._threads = threads or min(os.cpu_count() or 1, 8)
        self._context_window = context_window
        self._conversation_tokens = conversation_tokens
        self.parallel = max(1, parallel)
        self.queue_limit = max(0, queue_limit)
        self._model: Any = None
        self._ctx: Any = None
        self._template: Any = None
        self._specials: dict[str, str] = {}
        self._add_bos = False
        self._waiting: collections.deque[_Request] = collections.deque()
        self._active: list[_Request] = []
        self._slots: list[_Slot] = []
        self._wake = threading.Condition()
        self._closing = False
        self._worker: threading.Thread | None = None
        self.steps = 0
        self.reused_tokens = 0
        self.moved_tokens = 0
        self.shared_tokens = 0
        self._taken = 0

    # --- loading -----------------------------------------------------------------

    async def start(self) -> None:
        await asyncio.get_running_loop().run_in_executor(None, self._load)
        self._worker = threading.Thread(target=self._run, name="llama.cpp", daemon=True)
        self._worker.start()

    def _load(self) -> None:
        import llama_cpp
        from llama_cpp import _internals

        if not self.path.is_file():
            raise ModelNotFoundError(f"GGUF file not found: {self.path}")
        global _LOG_CALLBACK
        if _LOG_CALLBACK is None:
            _LOG_CALLBACK = llama_cpp.llama_log_callback(_log)
            llama_cpp.llama_log_set(_LOG_CALLBACK, ctypes.c_void_p(0))
        params = llama_cpp.llama_model_default_params()
        try:
            model = _internals.LlamaModel(path_model=str(self.path), params=params, verbose=False)
        except ValueError as error:
            raise ModelNotFoundError(f"cannot load {self.path}: {error}") from None
        per_sequence = self._context_window or slot_size(
            self._conversation_tokens, model.n_ctx_train()
        )
        self.context_window = per_sequence
        cparams = llama_cpp.llama_context_default_params()
        cparams.n_ctx = per_sequence * self.parallel
        cparams.n_batch = max(PREFILL_CHUNK * self.parallel, 512)
        cparams.n_ubatch = cparams.n_batch
        cparams.n_seq_max = self.parallel
        cparams.kv_unified = False  # each conversation its own cells: no cross-talk
        cparams.n_threads = cparams.n_threads_batch = self._threads
        cparams.no_perf = True
        try:
            ctx = _internals.LlamaContext(model=model, params=cparams, verbose=False)
        except ValueError as error:
            raise BackendError(f"llama.cpp could not make a context: {error}") from None
        metadata = model.metadata()
        template = metadata.get("tokenizer.chat_template")
        if not template:
            raise ModelNotFoundError(f"{self.path} has no chat template")
        self._template = _compile(template)
        vocab = model.vocab

        def special(key: str) -> str:
            token = metadata.get(key)
            return model.token_get_text(int(token)) if token is not None else ""

        self._specials = {
            "bos_token": special("tokenizer.ggml.bos_token_id"),
            "eos_token": special("tokenizer.ggml.eos_token_id"),
        }
        self._add_bos = bool(llama_cpp.llama_vocab_get_add_bos(vocab))
        if not llama_cpp.llama_memory_can_shift(ctx.memory):
            self.reuse_chunk = 0  # this model's cache cannot move: exact prefixes only
        self._model, self._ctx = model, ctx
        self._batch = _internals.LlamaBatch(
            n_tokens=cparams.n_batch, embd=0, n_seq_max=1, verbose=False
        )
        self._slots = [_Slot(seq) for seq in range(self.parallel)]
        self.per_message_overhead = self.measure_overhead()
        self.late_system = self.probe_late_system(self.render)
        log.info(
            "loaded %s with llama.cpp: %d conversations at once, %d tokens each, %d threads",
            self.path.name,
            self.parallel,
            per_sequence,
            self._threads,
        )

    async def close(self) -> None:
        with self._wake:
            self._closing = True
            self._wake.notify_all()
        if self._worker is not None:
            await asyncio.get_running_loop().run_in_executor(None, self._worker.join)
            self._worker = None
        for request in [*self._active, *self._waiting]:
            request.emit(BackendError("the model was shut down"))
            request.emit(END)
        self._active.clear()
        self._waiting.clear()
        if self._ctx is not None:
            self._batch.close()
            self._ctx.close()
            self._model.close()
            self._ctx = self._model = None

    # --- prompts and counting ------------------------------------------------------

    def _require(self) -> Any:
        if self._model is None:
            raise BackendError("the llama.cpp generator was not started")
        return self._model

    def render(self, messages: Sequence[ChatMessage], generation_prompt: bool = True) -> str:
        """The prompt text in the model's own chat template. A chat that ends with the
        assistant is continued from its last word (the policy's opening)."""
        started = bool(messages) and messages[-1].role is Role.ASSISTANT
        text = str(
            self._template.render(
                messages=[m.as_dict() for m in messages],
                add_generation_prompt=generation_prompt and not started,
                **self._specials,
            )
        )
        if started:
            final = messages[-1].content.strip()
            text = text[: text.rindex(final) + len(final)]
        return text

    def _prompt_tokens(self, messages: Sequence[ChatMessage]) -> list[int]:
        text = self.render(messages)
        bos = self._specials["bos_token"]
        add_bos = self._add_bos and not (bos and text.startswith(bos))
        return list(self._require().tokenize(text.encode(), add_bos, True))

    def count_text(self, text: str) -> int:
        return len(self._require().tokenize(text.encode(), False, False))

    def count_tokens(self, messages: Sequence[ChatMessage]) -> int:
        return len(self._prompt_tokens(messages))

    # --- generation ------------------------------------------------------------------

    def stream(
        self, messages: Sequence[ChatMessage], params: GenerationSettings
    ) -> AsyncIterator[str]:
        return self._submit(messages, params, background=False)

    def _pieces(
        self, messages: Sequence[ChatMessage], params: GenerationSettings, *, background: bool
    ) -> AsyncIterator[str]:
        return self._submit(messages, params, background=background)

    async def _submit(
        self, messages: Sequence[ChatMessage], params: GenerationSettings, *, background: bool
    ) -> AsyncIterator[str]:
        tokens = self._prompt_tokens(messages)
        if len(tokens) + params.max_new_tokens > self.context_window:
            limit = self.context_window - params.max_new_tokens
            tokens = tokens[-limit:]  # the dialogue manager keeps within budget; a guard
        handoff = Handoff()
        request = _Request(tokens, params, handoff.emit, threading.Event(), background)
        with self._wake:
            if self._closing:
                raise BackendError("the model is shutting down")
            if len(self._active) >= self.parallel and len(self._waiting) >= self.queue_limit:
                raise BusyError(
                    f"{len(self._active)} replies in progress and {len(self._waiting)} waiting"
                )
            self._waiting.append(request)
            self._wake.notify()
        try:
            async for piece in handoff.pieces():
                yield piece
        finally:
            request.cancel.set()
            with self._wake:
                self._wake.notify()

    def load(self) -> tuple[int, int]:
        """Replies being generated, and waiting."""
        with self._wake:
            return len(self._active), len(self._waiting)

    # --- the decoding loop (worker thread) ---------------------------------------------

    def _run(self) -> None:
        try:
            while True:
                with self._wake:
                    self._drop_cancelled()
                    while not self._closing and not self._active and not self._waiting:
                        self._wake.wait()
                    if self._closing:
                        return
                    self._admit()
                if self._active:
                    self._step()
        except BaseException as error:  # the engine is broken: fail everyone, loudly
            log.exception("the llama.cpp decoding loop failed")
            with self._wake:
                self._closing = True
                for request in [*self._active, *self._waiting]:
                    request.emit(error)
                    request.emit(END)
                self._active.clear()
                self._waiting.clear()

    def _drop_cancelled(self) -> None:
        for request in [r for r in self._active if r.cancel.is_set()]:
            self._finish(request)
        for request in [r for r in self._waiting if r.cancel.is_set()]:
            self._waiting.remove(request)
            request.emit(END)

    def _admit(self) -> None:
        while self._waiting and len(self._active) < self.parallel:
            # replies first, in order of arrival; then background work
            request = next((r for r in self._waiting if not r.background), self._waiting[0])
            self._waiting.remove(request)
            free = [s for s in self._slots if not s.busy]
            plans = {
                s.seq: plan_reuse(s.cached, request.tokens, self.reuse_chunk) for s in self._slots
            }
            # a slot is taken over only by the conversation it holds (the request keeps at
            # least half of it); anyone else takes an empty or the least recently used slot,
            # copying from another slot what it can use, and leaves other caches alone
            ours = [s for s in free if plans[s.seq][0] and 2 * plans[s.seq][0] >= len(s.cached)]
            if ours:
                slot = max(ours, key=lambda s: (plans[s.seq][0], -s.used))
            else:
                slot = min(free, key=lambda s: (bool(s.cached), s.used))
            keep, moves = plans[slot.seq]
            slot.busy = True
            self._taken += 1
            slot.used = self._taken
            request.slot = slot.seq
            donor = self._donor(plans, keep, exclude=slot)
            if donor is not None:
                self._copy(donor, slot, request)
            else:
                self._place(slot, request, keep, moves)
                if not request.background:
                    request.share = self._reading_the_same(request)
            self._active.append(request)
            request.sampler = self._sampler(request)

    def _donor(
        self, plans: dict[int, tuple[int, list[Move]]], keep: int, exclude: _Slot
    ) -> _Slot | None:
        """Another slot whose cache holds at least SHARE_MIN more of the prompt (``plans``:
        what each slot's cache could give it)."""
        best, most = None, keep + SHARE_MIN - 1
        for slot in self._slots:
            if slot is not exclude and plans[slot.seq][0] > most:
                best, most = slot, plans[slot.seq][0]
        return best

    def _reading_the_same(self, request: _Request) -> tuple[_Request, int] | None:
        """A reply being read whose prompt starts like this one's, for SHARE_MIN tokens
        more than this one keeps: this one waits for it, then copies its cache."""
        if self.parallel < 2:
            return None
        best: tuple[_Request, int] | None = None
        for other in self._active:
            if other.background or not other.prefilling or other.share is not None:
                continue
            common = min(_common_prefix(other.tokens, request.tokens), len(request.tokens) - 1)
            if common >= request.fed + SHARE_MIN and (best is None or common > best[1]):
                best = (other, common)
        return best

    def _place(self, slot: _Slot, request: _Request, keep: int, moves: list[Move]) -> None:
        """Make the slot's cache hold ``keep`` tokens of the prompt: move the runs into
        place and drop the rest."""
        import llama_cpp

        memory = self._ctx.memory
        for to, start, n in moves:
            if start != to:
                llama_cpp.llama_memory_seq_rm(memory, slot.seq, to, start)
                llama_cpp.llama_memory_seq_add(memory, slot.seq, start, start + n, to - start)
                self.moved_tokens += n
        llama_cpp.llama_memory_seq_rm(memory, slot.seq, keep, -1)
        slot.cached = request.tokens[:keep]
        self.reused_tokens += keep
        request.fed = keep

    def _copy(self, donor: _Slot, slot: _Slot, request: _Request) -> None:
        """Start the slot from a copy of the donor's cache (the buffer itself is copied
        before the next decode), then keep what the prompt can use of it."""
        import llama_cpp

        llama_cpp.llama_memory_seq_cp(self._ctx.memory, donor.seq, slot.seq, -1, -1)
        slot.cached = list(donor.cached)
        keep, moves = plan_reuse(slot.cached, request.tokens, self.reuse_chunk)
        self._place(slot, request, keep, moves)
        self.shared_tokens += keep

    def _resolve_shares(self) -> None:
        """Requests waiting for another to read their common start: copy it once read."""
        for request in self._active:
            if request.share is None:
                continue
            other, common = request.share
            source = self._slots[other.slot]
            if other in self._active and other.fed < common:
                continue  # still reading it
            request.share = None
            kept = plan_reuse(source.cached, request.tokens, self.reuse_chunk)[0]
            if source.seq != request.slot and kept >= request.fed + SHARE_MIN:
                self.reused_tokens -= request.fed  # counted again by the copy
                self._copy(source, self._slots[request.slot], request)

    def _sampler(self, request: _Request) -> Any:
        import llama_cpp

        params = request.params
        chain = llama_cpp.llama_sampler_chain_init(llama_cpp.llama_sampler_chain_default_params())
        add = llama_cpp.llama_sampler_chain_add
        if params.repetition_penalty != 1.0:
            n_vocab = llama_cpp.llama_vocab_n_tokens(self._model.vocab)
            penalties = llama_cpp.llama_sampler_init_penalties(
                n_vocab, 64, params.repetition_penalty, 0.0, 0.0
            )
            add(chain, penalties)
        if params.temperature > 0:
            if params.top_k:
                add(chain, llama_cpp.llama_sampler_init_top_k(params.top_k))
            add(chain, llama_cpp.llama_sampler_init_top_p(params.top_p, 1))
            add(chain, llama_cpp.llama_sampler_init_temp(params.temperature))
            seed = params.seed if params.seed is not None else llama_cpp.LLAMA_DEFAULT_SEED
            add(chain, llama_cpp.llama_sampler_init_dist(seed & 0xFFFFFFFF))
        else:
            add(chain, llama_cpp.llama_sampler_init_greedy())
        for token in request.tokens[-64:]:  # the penalty sees the prompt, as transformers'
            llama_cpp.llama_sampler_accept(chain, token)
        return chain

    def _step(self) -> None:
        import llama_cpp

        batch = self._batch.batch
        batch.n_tokens = 0
        wants: list[tuple[_Request, int]] = []

        def put(token: int, seq: int, logits: bool) -> None:
            slot = self._slots[seq]
            i = batch.n_tokens
            batch.token[i] = token
            batch.pos[i] = len(slot.cached)
            batch.n_seq_id[i] = 1
            batch.seq_id[i][0] = seq
            batch.logits[i] = logits
            batch.n_tokens = i + 1
            slot.cached.append(token)

        self._resolve_shares()
        # background work pauses while a reply's prompt is read (first tokens come first);
        # a prompt whose start another is reading waits for it
        reading = any(r.prefilling and not r.background for r in self._active)
        stepping = [r for r in self._active if not (reading and r.background) and r.share is None]
        for request in stepping:  # one token each for those already generating
            if not request.prefilling:
                put(request.last, request.slot, True)
                wants.append((request, batch.n_tokens - 1))
        for request in stepping:  # then a chunk of each prompt still being read
            if request.prefilling:
                size = BACKGROUND_CHUNK if request.background else PREFILL_CHUNK
                chunk = request.tokens[request.fed : request.fed + size]
                for n, token in enumerate(chunk):
                    last = request.fed + n + 1 == len(request.tokens)
                    put(token, request.slot, last)
                request.fed += len(chunk)
                if not request.prefilling:
                    wants.append((request, batch.n_tokens - 1))
        if batch.n_tokens == 0:
            return
        status = llama_cpp.llama_decode(self._ctx.ctx, batch)
        self.steps += 1
        if status != 0:
            raise BackendError(f"llama_decode returned {status}")
        vocab = self._model.vocab
        for request, index in wants:
            token = llama_cpp.llama_sampler_sample(request.sampler, self._ctx.ctx, index)
            if llama_cpp.llama_vocab_is_eog(vocab, token):
                self._finish(request)
                continue
            request.produced += 1
            piece = request.decoder.decode(self._model.token_to_piece(token, False).rstrip(b"\0"))
            request.emit(piece)
            request.last = token
            if request.produced >= request.params.max_new_tokens or request.cancel.is_set():
                self._finish(request)

    def _finish(self, request: _Request) -> None:
        import llama_cpp

        tail = request.decoder.decode(b"", final=True)
        if tail:
            request.emit(tail)
        request.emit(END)
        llama_cpp.llama_sampler_free(request.sampler)
        self._slots[request.slot].busy = False
        self._active.remove(request)


def _compile(template: str) -> Any:
    """A chat template compiled the way transformers does (sandboxed Jinja)."""
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    def raise_exception(message: str) -> None:
        raise BackendError(f"the chat template refused the conversation: {message}")

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
    env.globals["raise_exception"] = raise_exception
    return env.from_string(template)


def _log(level: int, text: bytes, user_data: Any) -> None:
    """llama.cpp's own log: errors to ours, the rest (hundreds of lines a load) dropped."""
    if level == 4 and text:  # GGML_LOG_LEVEL_ERROR
        log.error("llama.cpp: %s", text.decode(errors="replace").rstrip())


_LOG_CALLBACK: Any = None  # kept alive for as long as llama.cpp may call it
