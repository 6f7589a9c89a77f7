"""llama.cpp in-process (llama-cpp-python, ``make llamacpp``): GGUF files as they are.

The GGUF comes from the same resolvers as the HuggingFace backend (``size.path``, ``size.package``,
``size.source=ollama``), or from the shared store for a size that names a Hugging Face model adam
already shared as GGUF (job=share). ``backend.weight_type`` picks the type it runs as: the
file as it is, or a copy written once in a type with fast kernels on this CPU (llamacpp_weights.py).
Chat templates come from the GGUF's own ``tokenizer.chat_template``. Generation goes through one
scheduler per backend (scheduler.py): a thread that decodes up to ``n_seq`` batch sequences plus
``interactive_slots`` kept for interactive requests per llama.cpp call, each request joining at any
step and streaming its own tokens (llamacpp_native.py).
Finding the GGUF is in llamacpp_source.py, packing texts for embeddings in llamacpp_embed.py.
"""

from __future__ import annotations

import importlib.metadata
import logging
import os
import threading
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

from adam.backends import constraints, hf_loading, llamacpp_embed, llamacpp_source, llamacpp_weights
from adam.backends.base import (
    Embedding,
    Generation,
    GenerationRequest,
    ModelBackend,
    Priority,
    StreamChunk,
    WeightsLocation,
    finish_generation,
)
from adam.backends.constraints import TokenGuide
from adam.backends.loaded_models import loaded_models
from adam.backends.text import THINK_CLOSE, THINK_OPEN
from adam.errors import BackendError, ConfigError, ContextOverflowError, ModelNotFoundError, install_hint
from adam.paths import cache_root
from adam.settings.config import Device, ModelKind, WeightsSource

if TYPE_CHECKING:
    from adam.backends.llamacpp_native import BatchDecoder, Context, GgufModel, Prompt

log = logging.getLogger(__name__)

INSTALL_HINT = f"{install_hint('llamacpp')}: it builds llama-cpp-python from source, about 8 minutes on 2 cores"


def _native() -> Any:
    """adam.backends.llamacpp_native, importing llama_cpp; a missing install is a ConfigError with the fix."""
    try:
        from adam.backends import llamacpp_native
    except ImportError as err:
        raise ConfigError(f"backend=llamacpp needs llama-cpp-python: {INSTALL_HINT} ({err})") from err
    return llamacpp_native


class LlamaCppBackend(ModelBackend):
    """Runs GGUF models with llama.cpp in this process: batched generation, streaming, embeddings."""

    name = "llamacpp"
    loads_in_process = True
    supports_embeddings = True
    supports_streaming = True
    supports_json_schema = True  # llguidance token masks over the GGUF's vocabulary (adam/backends/constraints.py)
    supports_choice = True
    supports_logprobs = True
    supports_ignore_eos = True
    schedules = True

    def __init__(
        self,
        size: Any,
        hardware: Any = None,
        n_seq: int = 8,
        n_ctx: int = 2048,
        n_batch: int = 512,
        share_store: str | None = None,
        weight_type: str | None = None,
        interactive_slots: int = 1,
    ) -> None:
        super().__init__(size, hardware)
        for key, value in (("n_seq", n_seq), ("n_ctx", n_ctx), ("n_batch", n_batch)):
            if value < 1:
                raise ConfigError(f"backend.{key} must be at least 1, not {value}")
        if interactive_slots < 0:
            raise ConfigError(f"backend.interactive_slots must be 0 or more, not {interactive_slots}")
        self.n_seq = n_seq
        self.n_ctx = n_ctx
        self.interactive_slots = interactive_slots
        self.n_batch = max(n_batch, n_seq + interactive_slots)  # a step carries one token of every running sequence
        self.share_store = share_store
        self.weight_type = llamacpp_weights.check_setting(weight_type)  # None: auto, or as_is for a file you name
        self.threads = self.hardware.threads or os.cpu_count() or 1
        self._lock = threading.RLock()  # one decode at a time per context
        self._source: hf_loading.ModelSource | None = None
        self._plan: llamacpp_weights.WeightPlan | None = None
        self._model: GgufModel | None = None
        self._decoder: BatchDecoder | None = None
        self._embedder: Context | None = None
        self._formatter: Any = None
        self._guide: TokenGuide | None = None
        self._warned_no_template = False

    # ----------------------------------------------------------------- finding and loading the GGUF
    def source(self) -> hf_loading.ModelSource:
        """The GGUF file to load (resolved once); raises ModelNotFoundError with what to do."""
        with self._lock:
            if self._source is None:
                self._source = llamacpp_source.resolve_gguf(self.size, self.share_store)
            return self._source

    def weight_plan(self) -> llamacpp_weights.WeightPlan:
        """The weight type the GGUF runs as, why, and the file that holds it (decided once, converted on load)."""
        with self._lock:
            if self._plan is None:
                src = self.source()
                gpu = self.hardware.device != Device.cpu and _gpu_offload()
                self._plan = llamacpp_weights.plan(
                    src.path,
                    llamacpp_source.gguf_sha256(src.path),
                    self.weight_type,
                    user_named=bool(self.size.path) or self.size.source == WeightsSource.ollama,
                    embeds=self.size.kind == ModelKind.embed,
                    gpu=gpu,
                    cache=cache_root(),
                )
            return self._plan

    def check_available(self) -> None:
        """Find the GGUF and llama-cpp-python without loading the weights."""
        self.source()
        _native()

    def weights(self) -> dict[str, Any]:
        """Where the GGUF is, or why there is none; never downloads."""
        try:
            src = self.source()
        except ModelNotFoundError as err:
            return {"cached": False, "error": str(err)}
        return {"cached": True, "source": src.kind, "path": str(src.path)}

    def load(self) -> None:
        """Load the model and create the context the size's kind uses, now instead of on first use."""
        if self.size.kind == ModelKind.embed:
            self._embedding_context()
        else:
            self.scheduler()

    def _gguf(self) -> GgufModel:
        with self._lock:
            if self._model is None:
                native, weights = _native(), self.weight_plan()
                log.info("%s runs as %s: %s", self.source().path.name, weights.weight_type, weights.reason)
                path = llamacpp_weights.ensure(weights, self.source().path, self.threads)
                layers = 0 if self.hardware.device == Device.cpu else -1  # -1: all, where the build has a GPU
                log.info("loading %s with llama.cpp, hardware.threads=%d", path, self.threads)
                self._model = loaded_models.get_or_load(
                    ("llamacpp", str(path), layers), lambda: native.GgufModel(path, gpu_layers=layers)
                )
            return self._model

    def _batch_decoder(self) -> BatchDecoder:
        with self._lock:
            if self._decoder is None:
                native, model = _native(), self._gguf()
                window = self.context_window()
                trained = _int(model.meta(f"{model.meta('general.architecture')}.context_length"))
                if trained and window > trained:
                    log.warning("backend.n_ctx=%d is past the %d tokens %s was trained on", window, trained, model.path)
                slots = self.n_seq + self.interactive_slots
                context = native.Context(model, n_seq=slots, n_ctx=window, n_batch=self.n_batch, threads=self.threads)
                self._decoder = native.BatchDecoder(context)
            return self._decoder

    def _new_decoder(self) -> tuple[BatchDecoder, int]:
        """The scheduler's decoder: n_seq batch rows (interactive_slots more for interactive requests only)."""
        return self._batch_decoder(), self.n_seq

    def _embedding_context(self) -> Context:
        with self._lock:
            if self._embedder is None:
                native, model = _native(), self._gguf()
                limit = self._embed_limit()
                # an encoder (BERT) reads a whole text in one micro-batch, so a batch holds the longest text
                self._embedder = native.Context(
                    model,
                    n_seq=self.n_seq,
                    n_ctx=limit,
                    n_batch=max(self.n_batch, limit),
                    threads=self.threads,
                    pooling=self._pooling(native, model),
                )
            return self._embedder

    def _pooling(self, native: Any, model: GgufModel) -> int:
        """size.pooling, else the GGUF's own (encoders record it), else the last token (decoder embedders)."""
        if self.size.pooling is not None:
            return int(native.POOLING[self.size.pooling.value])
        if model.meta(f"{model.meta('general.architecture')}.pooling_type") is not None:
            return -1  # LLAMA_POOLING_TYPE_UNSPECIFIED: llama.cpp applies the file's
        return int(native.POOLING["last"])

    # ----------------------------------------------------------------- prompts and tokens
    def context_window(self) -> int:
        """backend.n_ctx: the context each sequence has (prompt and answer), never more than the size's."""
        return min(self.n_ctx, super().context_window())

    def _ids(self, text: str) -> list[int]:
        """Token ids the model reads for ``text``: BOS added where the vocabulary wants it and the text lacks it."""
        model = self._gguf()
        add = model.add_bos and not (model.bos_text and text.startswith(model.bos_text))
        return model.tokenize(text, add_special=add)

    def count_tokens(self, text: str) -> int:
        """Tokens the model reads for ``text``, as generation tokenizes it."""
        return len(self._ids(text))

    def sort_keys(self, texts: Sequence[str]) -> list[int]:
        """Token counts (llama.cpp tokenizes fast enough to count every text)."""
        if self.size.kind == ModelKind.embed:
            return [len(self._gguf().tokenize(t, add_special=True)) for t in texts]
        return [self.count_tokens(t) for t in texts]

    def format_prompt(self, request: GenerationRequest) -> str:
        """The exact text fed to the model: the GGUF's chat template applied to messages, or the raw prompt."""
        if request.prompt is not None:
            return request.prompt
        from jinja2 import TemplateError

        formatter = self._chat_formatter()
        if formatter is None:
            return super().format_prompt(request)
        try:
            return str(formatter(messages=[dict(m) for m in request.messages], enable_thinking=request.thinking).prompt)
        except (TemplateError, TypeError, ValueError, KeyError) as err:  # raise_exception() in a template: ValueError
            raise BackendError(f"the chat template rejected the messages: {_first_line(err)}") from err

    def _chat_formatter(self) -> Any:
        """llama-cpp-python's Jinja2 formatter over the GGUF's tokenizer.chat_template, or None without one."""
        with self._lock:
            if self._formatter is None:
                model = self._gguf()
                template = model.meta("tokenizer.chat_template")
                if not template:
                    if not self._warned_no_template:
                        self._warned_no_template = True
                        log.warning("%s has no chat template; using plain role: content lines", model.path.name)
                    return None
                from llama_cpp.llama_chat_format import Jinja2ChatFormatter

                self._formatter = Jinja2ChatFormatter(template, eos_token=model.eos_text, bos_token=model.bos_text)
            return self._formatter

    def opens_thinking(self, request: GenerationRequest) -> bool:
        """Chat templates of reasoning models end the prompt inside <think>."""
        return request.prompt is None and self.format_prompt(request).rstrip().endswith(THINK_OPEN)

    def has_thinking_mode(self) -> bool:
        """Whether the GGUF's chat template has Qwen3's enable_thinking switch or opens a <think> block."""
        template = self._gguf().meta("tokenizer.chat_template") or ""
        return "enable_thinking" in template or THINK_OPEN in template

    # ----------------------------------------------------------------- generation
    def _prepare(self, request: GenerationRequest) -> Prompt | BackendError:
        """The decoder's view of a request, or the error that is this request's alone."""
        if request.max_tokens < 1:
            return BackendError(f"max_tokens must be at least 1, not {request.max_tokens}")
        try:
            ids = self._ids(self.format_prompt(request))
        except BackendError as err:
            return err
        if not ids:
            return BackendError("the prompt is empty: the model has nothing to continue")
        window = self.context_window()
        if len(ids) + request.max_tokens > window:
            return ContextOverflowError(
                f"prompt is {len(ids)} tokens; with max_tokens={request.max_tokens} it does not fit the "
                f"{window}-token context of each sequence: shorten it, lower max_tokens, or raise backend.n_ctx"
            )
        stops = tuple(s for s in request.stop if s)
        constraint = None
        if request.constrained:
            try:
                constraint = self.token_guide().row(request, thinking_open=self.opens_thinking(request))
            except BackendError as err:
                return err
        return _native().Prompt(
            ids, request.max_tokens, stops, request.temperature, request.top_p, request.seed, constraint,
            request.logprobs, request.ignore_eos,
        )  # fmt: skip

    def schema_problem(self, schema: dict[str, Any]) -> str | None:
        """A schema keyword llguidance does not implement, in one line."""
        return constraints.schema_problem(schema)

    def token_guide(self) -> TokenGuide:
        """llguidance over the GGUF's vocabulary (built once, on the first constrained request)."""
        with self._lock:
            if self._guide is None:
                model = self._gguf()
                opening, closing = model.single_token(THINK_OPEN), model.single_token(THINK_CLOSE)
                think = (opening, closing) if opening is not None and closing is not None else None
                self._guide = TokenGuide.for_llamacpp(model.vocab, model.end_tokens(), model.n_vocab, think)
            return self._guide

    def _generate_batch(
        self, requests: Sequence[GenerationRequest], priority: Priority = Priority.batch
    ) -> list[Generation | BackendError]:
        """Every request submitted to the scheduler at once; a request that cannot run gets its own error in its
        place, so the others keep their batch."""
        results: list[Generation | BackendError | None] = []
        prompts: list[Prompt] = []
        where: list[int] = []  # request index of each prompt
        for i, request in enumerate(requests):
            prepared = self._prepare(request)
            if isinstance(prepared, BackendError):
                results.append(prepared)
            else:
                results.append(None)
                prompts.append(prepared)
                where.append(i)
        if prompts:
            from adam.backends.scheduler import answers

            made = answers(self.scheduler(), prompts, priority)
            for i, prompt, steps in zip(where, prompts, made, strict=True):
                last, text = steps[-1], "".join(e.text for e in steps)
                logprobs = [e.logprob for e in steps if e.logprob is not None]
                request = requests[i]
                results[i] = finish_generation(
                    text,
                    request,
                    finish_reason=last.finish_reason,
                    prompt_tokens=len(prompt.ids),
                    completion_tokens=last.tokens,
                    thinking_open=self.opens_thinking(request),
                    logprobs=logprobs if request.logprobs is not None else None,
                )
        return [r for r in results if r is not None]

    def _stream_raw(
        self, request: GenerationRequest, priority: Priority = Priority.interactive
    ) -> Iterator[StreamChunk]:
        """Raw text as each token is decoded, in the steps it shares with every other request; the base class
        cuts stop strings and thinking."""
        from adam.backends.scheduler import events

        prompt = self._prepare(request)
        if isinstance(prompt, BackendError):
            raise prompt
        for event in events(self.scheduler(), prompt, priority):
            yield StreamChunk(event.text, "", event.finish_reason, len(prompt.ids), event.tokens)

    # ----------------------------------------------------------------- embeddings
    def _embed_limit(self) -> int:
        """Tokens of a text that are embedded: size.max_seq_length, else the context, within backend.n_ctx."""
        return min(self.size.max_seq_length or self.context_window(), self.context_window())

    def _embed_batch(self, texts: Sequence[str]) -> list[Embedding]:
        native = _native()
        ctx = self._embedding_context()
        return llamacpp_embed.embed_texts(native, ctx, texts, self._embed_limit(), self._lock)

    # ----------------------------------------------------------------- description
    def info(self) -> dict[str, Any]:
        """The GGUF, its hash, the context per sequence and the batch shape; never loads the weights."""
        out: dict[str, Any] = {
            "backend": self.name,
            "model": self.size.path or self.size.package or self.size.ollama_tag or self.size.hf_id,
            "source": None,
            "path": None,
            "sha256": None,
            "kind": self.size.kind.value,
            "context_length": self.context_window(),
            "n_seq": self.n_seq,
            "interactive_slots": self.interactive_slots,
            "n_ctx": self.n_ctx,
            "n_batch": self.n_batch,
            "threads": self.threads,
            "format": "gguf",
            "llama_cpp_python": _version(),
        }
        try:
            src = self.source()
        except ModelNotFoundError as err:
            out["error"] = str(err)
        else:
            out.update(
                model=src.model, source=src.kind, path=str(src.path), sha256=llamacpp_source.gguf_sha256(src.path)
            )
            weights = self.weight_plan()
            out.update(
                file_type=weights.file_type,
                weight_type=weights.weight_type,
                weight_type_reason=weights.reason,
                weights_path=str(weights.path),
            )
        model = self._model
        if model is not None:
            native = _native()
            out.update(
                architecture=model.meta("general.architecture"),
                parameters=int(native.llama_cpp.llama_model_n_params(model.ptr)),
                embedding_dim=int(native.llama_cpp.llama_model_n_embd_out(model.ptr)),
                device="gpu"
                if native.llama_cpp.llama_supports_gpu_offload() and self.hardware.device != Device.cpu
                else "cpu",
            )
        return out

    def export_weights(self) -> WeightsLocation:
        """The GGUF itself, for the shared store (linked there, not converted)."""
        src = self.source()
        return WeightsLocation(
            path=str(src.path),
            format="gguf",
            model_id=self.size.hf_id or src.model,
            revision=self.size.revision,
            extra={"source": src.kind, "sha256": llamacpp_source.gguf_sha256(src.path)},
        )

    def close(self) -> None:
        """Free this backend's contexts; the model stays loaded for other backends until the registry lets go."""
        with self._lock:
            self._stop_scheduler()
            self._decoder = None
            self._embedder = None
            self._plan = None
            self._formatter = None
            self._guide = None
            self._model = None


def _gpu_offload() -> bool:
    """Whether this llama-cpp-python build can put layers on a GPU (False when it is not installed)."""
    try:
        import llama_cpp
    except ImportError:
        return False
    return bool(llama_cpp.llama_supports_gpu_offload())


def _version() -> str | None:
    try:
        return importlib.metadata.version("llama_cpp_python")
    except importlib.metadata.PackageNotFoundError:
        return None


def _int(value: str | None) -> int | None:
    return int(value) if value and value.isdigit() else None


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__
