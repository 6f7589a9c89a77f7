"""ModelManager: the Python API, built from the same Hydra config the CLI composes."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from omegaconf import DictConfig

from adam.backends.base import Generation, ModelBackend
from adam.engine import Engine
from adam.engine.settings import PARAMS
from adam.errors import BackendError, ConfigError


def compose_config(overrides: Sequence[str] = ()) -> DictConfig:
    """Compose adam's config with Hydra's compose API, also from inside a running Hydra app."""
    from hydra import compose, initialize_config_module
    from hydra.core.global_hydra import GlobalHydra
    from hydra.errors import HydraException

    import adam.backends.schemas  # noqa: F401  (registers the schemas)

    gh = GlobalHydra.instance()
    outer = gh.hydra if gh.is_initialized() else None  # the app we may be running inside
    gh.clear()
    try:
        with initialize_config_module("adam.conf", version_base="1.3"):
            return compose("config", overrides=list(overrides), return_hydra_config=True)
    except HydraException as err:
        raise ConfigError(str(err).splitlines()[0] if str(err) else repr(err)) from err
    finally:
        if outer is not None:
            GlobalHydra.instance().clear()
            GlobalHydra.instance().initialize(outer)


class ModelManager:
    """Generate and embed from Python with the sizes, domains and backends of the CLI.

    >>> m = ModelManager(model_type="huggingface", model_size="demo")
    >>> m.generate_response("What is the capital of France?", max_tokens=20)
    """

    def __init__(
        self,
        model_type: str = "huggingface",
        model_size: str = "demo",
        domain: str = "general",
        *,
        hardware: str | None = None,
        overrides: Sequence[str] = (),
        share_with_ollama: bool = False,
    ) -> None:
        from adam.jobs.share import share_model
        from adam.planning.sizing import resolve_auto
        from adam.run.runner import build_backend
        from adam.settings.job_schemas import check_values

        choices = [f"backend={model_type}", f"size={model_size}", f"domain={domain}"]
        if hardware:
            choices.append(f"hardware={hardware}")
        self.config = compose_config([*choices, *overrides])
        check_values(self.config)  # job.max_tokens=-5 and the like, as runner.preflight does
        resolve_auto(self.config)  # size=auto and quantization=auto, as runner.run does
        self.backend: ModelBackend = build_backend(self.config)
        self.engine = Engine.from_config(self.backend, self.config.job, self.config.domain)  # the rules jobs use
        # Where the weights were shared to (store GGUF, Ollama name), when share_with_ollama is set.
        self.shared: dict[str, Any] | None = None
        if share_with_ollama:
            self.shared = share_model(self.config.share, self.backend)

    # ----------------------------------------------------------------- generation
    def generate(
        self,
        prompt: str | None = None,
        *,
        messages: Sequence[Mapping[str, Any]] | None = None,
        system: str | None = None,
        thinking: bool | None = None,
        **params: Any,
    ) -> Generation:
        """One generation with its thinking text, token counts and finish reason."""
        (result,) = self.engine.complete([self._request(prompt, messages, system, thinking, params)])
        if isinstance(result, BackendError):
            raise result
        return result

    def generate_response(self, prompt: str | None = None, **kwargs: Any) -> str:
        """The answer text for a prompt; keyword params as in the OpenAI API (max_tokens, temperature, ...)."""
        return self.generate(prompt, **kwargs).text

    def generate_stream(
        self,
        prompt: str | None = None,
        *,
        messages: Sequence[Mapping[str, Any]] | None = None,
        system: str | None = None,
        thinking: bool | None = None,
        **params: Any,
    ) -> Iterator[str]:
        """The answer text in pieces as it is generated; joined, it equals generate_response()."""
        for chunk in self.engine.stream(self._request(prompt, messages, system, thinking, params)):
            if chunk.text:
                yield chunk.text

    def _request(self, prompt: Any, messages: Any, system: str | None, thinking: bool | None, params: dict) -> Any:
        if (prompt is None) == (messages is None):
            raise ValueError("pass a prompt or messages, not both")
        unknown = set(params) - set(PARAMS)
        if unknown:
            raise TypeError(f"unknown generation parameters: {', '.join(sorted(unknown))}")
        return self.engine.request(
            messages=messages, prompt=prompt, params=params, system_prompt=system, thinking=thinking
        )

    # ----------------------------------------------------------------- embeddings
    def embed(self, text: str, *, query_task: str | None = None) -> list[float]:
        """One L2-normalised embedding vector (``query_task``: embed it as a query for that task)."""
        return self.batch_embed([text], query_task=query_task)[0]

    def batch_embed(self, texts: Sequence[str], *, query_task: str | None = None) -> list[list[float]]:
        """Embeddings for many texts, in order; ``query_task`` marks them as queries (Qwen3-Embedding).

        Raises the BackendError of the first text that failed.
        """
        out = []
        for result in self.engine.embed_texts(texts, query_task=query_task, truncate=True):  # as sentence-transformers
            if isinstance(result, BackendError):
                raise result
            out.append(result.vector.tolist())
        return out

    # ----------------------------------------------------------------- the rest
    def count_tokens(self, text: str) -> int:
        """Tokens the model sees for ``text``."""
        return self.backend.count_tokens(text)

    def get_model_info(self) -> dict[str, Any]:
        """Backend, model id or path, revision, kind, context length, device."""
        return self.backend.info()

    def close(self) -> None:
        """Release the backend's resources."""
        self.backend.close()

    def __enter__(self) -> ModelManager:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
