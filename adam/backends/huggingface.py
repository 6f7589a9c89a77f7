"""transformers on this machine: generation, streaming and embeddings from hub ids, local dirs and GGUF files.

Nothing heavy is imported until the model is first needed. Where the weights come from lives in
hf_loading.py, loading them and guarding forward passes in hf_model.py; this class ties them to one
size and hardware config, and owns the prompts, tokens and embeddings. Generation goes through one
scheduler per backend (scheduler.py) over adam's own decode loop (hf_decode.py): every row streams
its own tokens and leaves the batch when done, interactive requests start before batch work. Loaded
models are shared through adam.backends.loaded_models.loaded_models, so two backends for the same weights, device
and dtype hold one copy.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from adam.backends import (
    constraints,
    gguf_import,
    hf_facts,
    hf_loading,
    hf_model,
    hf_onnx,
    hf_options,
    hf_tensors,
)
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
from adam.backends.hf_model import LoadedModel
from adam.backends.loaded_models import loaded_models
from adam.backends.text import THINK_OPEN
from adam.errors import BackendError, ConfigError, ModelNotFoundError, first_line
from adam.paths import cache_root
from adam.settings.config import ModelKind, OnnxQuantization, Runtime

if TYPE_CHECKING:
    import torch

    from adam.backends.hf_decode import HfPrompt, RowDecoder

log = logging.getLogger(__name__)

_MAX_REMEMBERED = 1 << 16  # encodings kept between sorting a window and embedding it
# Padded tokens per forward pass when embedding on a CPU and backend.token_budget is unset: measured
# on all-MiniLM-L6-v2 (bench/RESULTS.md), the cost per token is flat from 256 to 8192 tokens a pass,
# so a budget only cuts padding (long texts go in small batches) and caps activation memory.
CPU_EMBED_TOKEN_BUDGET = 2048
# Rows one generation batch may hold: more than a job's batch (job.batch_size) or the server's (job.max_batch)
# sends at once, so each of those runs as one batch; interactive requests beyond it wait for the next.
MAX_ROWS = 64


class HuggingFaceBackend(ModelBackend):
    """Runs models with transformers on CPU, CUDA or MPS; loads on first use."""

    reads_hf_cache = True
    loads_in_process = True
    name = "huggingface"
    supports_embeddings = True
    supports_streaming = True
    supports_json_schema = True  # llguidance token masks (adam/backends/constraints.py)
    supports_choice = True
    supports_logprobs = True
    supports_ignore_eos = True
    runtimes = tuple(Runtime)  # backend.runtime: what runs an embedder's forward pass
    schedules = True

    def __init__(
        self,
        size: Any,
        hardware: Any = None,
        trust_remote_code: bool = False,
        cache_dir: str | None = None,
        token_budget: int | None = None,
        progress: bool = True,
        runtime: Runtime = Runtime.torch,
        quantization: OnnxQuantization = OnnxQuantization.none,
    ) -> None:
        super().__init__(size, hardware)
        if token_budget is not None and token_budget < 1:
            raise ConfigError(f"backend.token_budget must be at least 1 (or null), not {token_budget}")
        self.runtime, self.quantization = _runtime_settings(self.size, runtime, quantization)
        self.trust_remote_code = trust_remote_code
        self.cache_dir = cache_root(cache_dir)
        self._token_budget = token_budget
        self.progress = progress  # transformers' own download and loading bars (stderr, a terminal only)
        self._lock = threading.RLock()
        self._source: hf_loading.ModelSource | None = None
        self._folder: Path | None = None
        self._tokenizer: Any = None
        self._loaded: LoadedModel | None = None
        self._guide: TokenGuide | None = None
        self._onnx: hf_onnx.OnnxEncoder | None = None
        self._warned_no_template = False
        # text -> (ids as the model reads them, tokens before truncation): tokenized once, when sorting
        self._encoded: dict[str, tuple[list[int], int]] = {}

    # ----------------------------------------------------------------- resolving and loading
    def source(self, *, download: bool = True) -> hf_loading.ModelSource:
        """Where the weights are (resolved once); raises ModelNotFoundError."""
        with self._lock:
            if self._source is None:
                with hf_loading.loading_bars(self.progress):
                    self._source = hf_loading.resolve_source(self.size, download=download)
            return self._source

    def check_available(self) -> None:
        """Resolve the weights (downloading hub models) without loading them; refuse what runtime=onnx cannot run."""
        self.source()
        if self.runtime == Runtime.onnx:
            self._check_onnx()

    def _check_onnx(self) -> None:
        """runtime=onnx: a CPU, float32 weights as they are, an encoder, onnxruntime installed (ConfigError)."""
        device = hf_facts.choose_device(self.hardware)
        dtype = str(hf_facts.choose_dtype(self.hardware, device)).removeprefix("torch.")
        if device != "cpu" or dtype != "float32" or str(self.hardware.quantization) not in ("none", "auto"):
            raise ConfigError(
                f"backend.runtime=onnx runs float32 weights on the CPU, not {dtype} on {device} with "
                f"hardware.quantization={self.hardware.quantization}: set hardware=cpu (backend.quantization=int8 "
                "quantizes for ONNX), or use backend.runtime=torch"
            )
        hf_onnx.check_folder(self.model_dir(), self.source().model)

    def weights(self) -> dict[str, Any]:
        """Where the weights are on this machine or, when they are not, the command that downloads them."""
        try:
            src = self.source(download=False)
        except ModelNotFoundError as err:
            out: dict[str, Any] = {"cached": False, "error": str(err)}
            if self.size.hf_id and not (self.size.path or self.size.package):
                out["download"] = hf_loading.download_command(self.size.hf_id, self.size.revision)
            return out
        return {"cached": True, "source": src.kind, "path": str(src.path)}

    def declared_width(self) -> int | None:
        """The model's hidden size, which adam's pooling keeps, read from config.json without loading the weights;
        None for a GGUF source (the engine then embeds one text to learn it)."""
        if self._loaded is not None:
            return getattr(self._loaded.model.config, "hidden_size", None)
        try:
            src = self.source(download=False)
        except ModelNotFoundError:
            return None
        if src.is_gguf:
            return None
        config = hf_facts.read_json(Path(src.path) / "config.json")
        if not isinstance(config, dict):
            return None
        width = config.get("hidden_size") or (config.get("text_config") or {}).get("hidden_size")
        return int(width) if isinstance(width, int) else None

    def suggestions(self) -> list[str]:
        """backend.runtime=onnx for an encoder embedder that runs on torch on a CPU."""
        if self.runtime != Runtime.torch or self.size.kind != ModelKind.embed:
            return []
        if hf_facts.choose_device(self.hardware) != "cpu":
            return []
        model_type = self.size.architecture
        if model_type is None:
            with contextlib.suppress(ModelNotFoundError, ConfigError):
                src = self.source(download=False)
                config = None if src.is_gguf else hf_facts.read_json(Path(src.path) / "config.json")
                model_type = config.get("model_type") if isinstance(config, dict) else None
        if hf_onnx.refusal(model_type, self.size.name) is not None:
            return []
        return [
            "backend.runtime=onnx embeds with this model faster on a CPU, with the same vectors (cosine >= 0.9999); "
            "backend.quantization=int8 on top is faster still and moves the vectors slightly "
            "(docs/backends.md: Embeddings on ONNX Runtime)"
        ]

    def has_thinking_mode(self) -> bool:
        """Whether the chat template has Qwen3's enable_thinking switch or opens a <think> block itself."""
        template = getattr(self.tokenizer(), "chat_template", None)
        if isinstance(template, dict):  # named templates
            template = " ".join(str(t) for t in template.values())
        return bool(template) and ("enable_thinking" in template or THINK_OPEN in template)

    def model_dir(self) -> Path:
        """The HF-format directory the model loads from (a GGUF file's converted copy)."""
        with self._lock:
            if self._folder is None:
                src = self.source()
                with hf_loading.loading_bars(self.progress, gguf=src.is_gguf):
                    converted = gguf_import.ensure_converted(src.path, self.cache_dir) if src.is_gguf else None
                self._folder = converted or src.path
            return self._folder

    def _cache_key(self, *parts: Any) -> tuple[Any, ...]:
        src = self.source()
        return (str(self.model_dir()), src.revision, self.trust_remote_code, *parts)

    def tokenizer(self) -> Any:
        """The model's tokenizer, loaded (and shared) without the weights."""
        if self._tokenizer is None:
            key = self._cache_key("tokenizer")
            self._tokenizer = loaded_models.get_or_load(key, self._load_tokenizer)
        return self._tokenizer

    def _load_tokenizer(self) -> Any:
        return hf_model.load_tokenizer(self.model_dir(), self.source().model, self.trust_remote_code)

    def load(self) -> None:
        """Load the model now instead of on first use."""
        if self.runtime == Runtime.onnx:
            self._onnx_encoder()
        else:
            self._model()

    def _onnx_encoder(self) -> hf_onnx.OnnxEncoder:
        """The ONNX Runtime session over this model's export (exported the first time), shared like a model."""
        if self._onnx is None:
            self._check_onnx()
            path = hf_onnx.ensure_export(self.model_dir(), self.cache_dir, self.quantization)
            threads = self.hardware.threads
            key = ("onnx", str(path), threads)
            self._onnx = loaded_models.get_or_load(key, lambda: hf_onnx.OnnxEncoder(path, threads))
        return self._onnx

    def _model(self) -> LoadedModel:
        if self._loaded is None:
            device = hf_facts.choose_device(self.hardware)
            dtype = hf_facts.choose_dtype(self.hardware, device)
            key = self._cache_key(
                device, str(dtype), self.size.kind.value, *hf_options.cache_parts(self.size, self.hardware)
            )
            tokenizer = self.tokenizer()  # outside get_or_load: the registry's lock is not re-entrant
            self._loaded = loaded_models.get_or_load(key, lambda: self._load_model(tokenizer, device, dtype))
        return self._loaded

    def _load_model(self, tokenizer: Any, device: str, dtype: torch.dtype) -> LoadedModel:
        return hf_model.load_model(
            self.model_dir(),
            self.source().model,
            self.size,
            self.hardware,
            tokenizer,
            device,
            dtype,
            trust_remote_code=self.trust_remote_code,
            progress=self.progress,
        )

    # ----------------------------------------------------------------- prompts and tokens
    def count_tokens(self, text: str) -> int:
        """Tokens the model sees for ``text`` (special tokens the tokenizer adds included)."""
        return len(self.tokenizer()(text, add_special_tokens=True)["input_ids"])

    def sort_keys(self, texts: Sequence[str]) -> list[int]:
        """Token counts in one tokenizer call; an embedding model's encodings are kept for _embed_batch."""
        if self.size.kind == ModelKind.embed:
            return [len(ids) for ids, _ in self._encode(texts)]
        return [len(ids) for ids in self.tokenizer()(list(texts), add_special_tokens=True)["input_ids"]]

    @property
    def token_budget(self) -> int | None:  # type: ignore[override]
        """backend.token_budget; unset, CPU_EMBED_TOKEN_BUDGET for embeddings on a CPU, else no limit."""
        if self._token_budget is None and self.size.kind == ModelKind.embed:
            device = self._loaded.device if self._loaded is not None else hf_facts.choose_device(self.hardware)
            self._token_budget = CPU_EMBED_TOKEN_BUDGET if device == "cpu" else 0  # 0: decided, no limit
        return self._token_budget or None

    def _max_length(self) -> int:
        """Tokens an embedding model reads: the size's max_seq_length, the sentence-transformers file's, the context."""
        return (
            self.size.max_seq_length
            or hf_facts.sentence_transformers_max_length(self.model_dir())
            or self.size.context_length
        )

    def _encode(self, texts: Sequence[str]) -> list[tuple[list[int], int]]:
        """(ids truncated to _max_length, tokens before truncation) per text, remembered until embedded."""
        new = [t for t in dict.fromkeys(texts) if t not in self._encoded]
        if new:
            tok, limit = self.tokenizer(), self._max_length()
            rows = tok(new, add_special_tokens=True, truncation=True, max_length=limit)["input_ids"]
            full = [len(row) for row in rows]
            cut = [i for i, n in enumerate(full) if n >= limit]  # only these can have been truncated
            if cut:
                whole = tok([new[i] for i in cut], add_special_tokens=True)["input_ids"]
                for i, row in zip(cut, whole, strict=True):
                    full[i] = len(row)
            if len(self._encoded) + len(new) > _MAX_REMEMBERED:  # sorted but never embedded must not pile up
                self._encoded.clear()
            self._encoded.update(zip(new, zip(rows, full, strict=True), strict=True))
        return [self._encoded[t] for t in texts]

    def format_prompt(self, request: GenerationRequest) -> str:
        """The exact text fed to the model: the chat template applied to messages, or the raw prompt."""
        return self._prompt(request)[0]

    def opens_thinking(self, request: GenerationRequest) -> bool:
        """Chat templates of reasoning models (QwQ, Qwen3 *-Thinking-2507) end the prompt inside <think>."""
        return request.prompt is None and self.format_prompt(request).rstrip().endswith(THINK_OPEN)

    def _prompt(self, request: GenerationRequest) -> tuple[str, bool]:
        """(text, whether the tokenizer should still add its special tokens)."""
        if request.prompt is not None:
            return request.prompt, True
        from jinja2 import TemplateError

        tok = self.tokenizer()
        if not getattr(tok, "chat_template", None):
            if not self._warned_no_template:
                self._warned_no_template = True
                log.warning("%s has no chat template; using plain role: content lines", self.source().model)
            return super().format_prompt(request), True
        messages = [dict(m) for m in request.messages]
        try:
            text = tok.apply_chat_template(
                messages, add_generation_prompt=True, tokenize=False, enable_thinking=request.thinking
            )
        except (TemplateError, TypeError, ValueError, KeyError) as err:  # e.g. roles that do not alternate
            raise BackendError(f"the chat template rejected the messages: {first_line(err)}") from err
        return text, False

    def _prompt_ids(self, request: GenerationRequest) -> list[int]:
        text, add_special = self._prompt(request)
        return list(self.tokenizer()(text, add_special_tokens=add_special)["input_ids"])

    # ----------------------------------------------------------------- generation
    def _new_decoder(self) -> tuple[RowDecoder, int]:
        """The scheduler's decoder, made with the first generation: MAX_ROWS rows at once."""
        from adam.backends.hf_decode import RowDecoder

        return RowDecoder(self._model(), MAX_ROWS), MAX_ROWS

    def _hf_prompt(self, request: GenerationRequest) -> HfPrompt:
        """The request as the decoder reads it: its ids, limits, sampling, and a fresh constraint where it asks for
        one (BackendError: no tokens asked for, or a grammar that cannot be compiled)."""
        from adam.backends.hf_decode import HfPrompt

        if request.max_tokens < 1:
            raise BackendError(f"max_tokens must be at least 1, not {request.max_tokens}")
        stops = tuple(s for s in request.stop if s)
        ids = self._prompt_ids(request)
        constraint, token_bytes = None, None
        if request.constrained:
            constraint = self.token_guide().row(request, thinking_open=self.opens_thinking(request))
        if request.logprobs is not None:
            token_bytes = self.token_guide().token_bytes  # built here: the decoder's thread never takes our lock
        return HfPrompt(
            ids, request.max_tokens, stops, request.temperature, request.top_p, request.seed, constraint,
            request.logprobs, token_bytes, request.ignore_eos,
        )  # fmt: skip

    def _generate_batch(
        self, requests: Sequence[GenerationRequest], priority: Priority = Priority.batch
    ) -> list[Generation]:
        """Every request through the scheduler at once, constrained, sampled and plain rows in the same decode
        steps. A failing request fails the call (the base class then retries each alone)."""
        from adam.backends.scheduler import answers

        prompts = [self._hf_prompt(request) for request in requests]
        results = []
        for request, prompt, steps in zip(requests, prompts, answers(self.scheduler(), prompts, priority), strict=True):
            logprobs = [e.logprob for e in steps if e.logprob is not None]
            results.append(
                finish_generation(
                    "".join(e.text for e in steps),
                    request,
                    finish_reason=steps[-1].finish_reason,
                    prompt_tokens=len(prompt.ids),
                    completion_tokens=steps[-1].tokens,
                    thinking_open=self.opens_thinking(request),
                    logprobs=logprobs if request.logprobs is not None else None,
                )
            )
        return results

    def _stream_raw(
        self, request: GenerationRequest, priority: Priority = Priority.interactive
    ) -> Iterator[StreamChunk]:
        """Raw text as each token is decoded, in the steps it shares with the rest of its batch (constrained or
        not); the base class cuts stop strings and thinking."""
        from adam.backends.scheduler import events

        prompt = self._hf_prompt(request)
        for event in events(self.scheduler(), prompt, priority):
            yield StreamChunk(event.text, "", event.finish_reason, len(prompt.ids), event.tokens)

    def schema_problem(self, schema: dict[str, Any]) -> str | None:
        """A schema keyword llguidance does not implement, in one line."""
        return constraints.schema_problem(schema)

    def token_guide(self) -> TokenGuide:
        """llguidance over this model's vocabulary (built once, on the first constrained or logprobs request)."""
        with self._lock:
            if self._guide is None:
                lm = self._model()
                width = int(lm.model.get_output_embeddings().weight.shape[0])
                self._guide = TokenGuide.for_hf(lm.tokenizer, lm.eos_ids, width)
            return self._guide

    # ----------------------------------------------------------------- embeddings
    def _embed_batch(self, texts: Sequence[str]) -> list[Embedding]:
        import torch

        onnx = self.runtime == Runtime.onnx
        encoder, lm = (self._onnx_encoder(), None) if onnx else (None, self._model())
        pooling = self._pooling(self.model_dir(), decoder=False) if lm is None else self._pooling(lm.folder, lm.decoder)
        encoded = self._encode(texts)
        for text in texts:
            self._encoded.pop(text, None)
        if any(not ids for ids, _ in encoded):
            raise BackendError("an empty text has no tokens to embed")
        tok = self.tokenizer()
        input_ids, mask = hf_tensors.pad_rows([ids for ids, _ in encoded], tok.pad_token_id or 0, tok.padding_side)
        if encoder is not None:  # ONNX Runtime runs the forward pass; pooling stays the same torch code
            hidden = torch.from_numpy(encoder.hidden(input_ids.numpy(), mask.numpy()))
            with torch.inference_mode():
                vectors = hf_tensors.pool(hidden, mask, pooling).float()
                vectors = torch.nn.functional.normalize(vectors, p=2, dim=-1).numpy()
        else:
            assert lm is not None
            with hf_model.running(lm, "embedding"):
                hidden = lm.model.base_model(input_ids=input_ids.to(lm.device), attention_mask=mask.to(lm.device))
                vectors = hf_tensors.pool(hidden.last_hidden_state, mask.to(lm.device), pooling).float()
                vectors = torch.nn.functional.normalize(vectors, p=2, dim=-1).cpu().numpy()
        return [
            Embedding(vector, tokens=len(ids), truncated=total > len(ids))
            for vector, (ids, total) in zip(vectors, encoded, strict=True)
        ]

    def _pooling(self, folder: Path, decoder: bool) -> str:
        """The size's pooling, else the sentence-transformers files', else last token (decoders) or mean."""
        pooling = self.size.pooling.value if self.size.pooling else None
        return pooling or hf_facts.sentence_transformers_pooling(folder) or ("last" if decoder else "mean")

    # ----------------------------------------------------------------- description
    def info(self) -> dict[str, Any]:
        """Model, source, revision, file hash, kind, context, device and dtype; never loads the weights."""
        out: dict[str, Any] = {
            "backend": self.name,
            "model": self.size.path or self.size.hf_id or self.size.package,
            "revision": self.size.revision,
            "source": None,
            "path": None,
            "sha256": None,
            "kind": self.size.kind.value,
            "context_length": self.context_window(),
            "runtime": self.runtime.value,  # vectors of two runtimes never mix in one run or store
            "quantization": self.quantization.value,
        }
        try:
            src = self.source(download=False)
        except ModelNotFoundError as err:
            out["error"] = str(err)
        else:
            out.update(source=src.kind, path=str(src.path))
            if src.is_gguf:
                out["sha256"] = gguf_import.file_sha256(src.path, self.cache_dir)
        lm = self._loaded
        if self._onnx is not None:
            out.update(device="cpu", dtype="float32", onnx_file=str(self._onnx.path))
        elif lm is not None:
            config = lm.model.config
            out.update(
                device=lm.device,
                dtype=str(lm.dtype).removeprefix("torch."),
                parameters=sum(p.numel() for p in lm.model.parameters()),
                embedding_dim=getattr(config, "hidden_size", None),
            )
        else:
            device = hf_facts.choose_device(self.hardware)
            out.update(device=device, dtype=str(hf_facts.choose_dtype(self.hardware, device)).removeprefix("torch."))
        return out

    def export_weights(self) -> WeightsLocation:
        """The HF directory holding the weights (for a GGUF, its converted copy)."""
        src = self.source()
        extra: dict[str, Any] = {"source": src.kind}
        if src.is_gguf:
            extra.update(gguf=str(src.path), sha256=gguf_import.file_sha256(src.path, self.cache_dir))
        return WeightsLocation(
            path=str(self.model_dir()), format="hf", model_id=self.size.hf_id, revision=self.size.revision, extra=extra
        )

    def close(self) -> None:
        """Drop this backend's references; the shared model stays loaded for other backends."""
        with self._lock:
            self._stop_scheduler()
        self._loaded = None
        self._onnx = None
        self._tokenizer = None
        self._guide = None


def _runtime_settings(size: Any, runtime: Any, quantization: Any) -> tuple[Runtime, OnnxQuantization]:
    """backend.runtime and backend.quantization checked against each other and the size, before anything loads."""
    try:
        runtime, quantization = Runtime(str(runtime)), OnnxQuantization(str(quantization))
    except ValueError as err:
        raise ConfigError(f"backend.runtime or backend.quantization: {err}") from None
    if quantization != OnnxQuantization.none and runtime != Runtime.onnx:
        raise ConfigError(f"backend.quantization={quantization} needs backend.runtime=onnx")
    if runtime == Runtime.onnx:
        if size.kind != ModelKind.embed:
            raise ConfigError(f"backend.runtime=onnx runs embedding models only; size={size.name} generates text")
        why = size.architecture and hf_onnx.refusal(size.architecture, f"size={size.name}")
        if why:
            raise ConfigError(why)
    return runtime, quantization
