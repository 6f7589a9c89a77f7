"""Request settings, resolved once per engine: a record's own value, else the job's, else the domain's.

Their defaults are the schemas' (DomainSpec for sampling, GenerateJob for the rest), so a bare ``Engine(backend)``
answers as ``python -m adam`` with domain=general does: sampled at DomainSpec.temperature, not greedily.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from omegaconf import DictConfig, OmegaConf

from adam.backends.types import GenerationRequest
from adam.protocol.openai import PARAMS  # what a record may set
from adam.protocol.structured import job_constraint
from adam.settings.config import DomainSpec
from adam.settings.job_schemas import GenerateJob, Overflow

__all__ = ["PARAMS", "Settings"]


@dataclass(frozen=True)
class Settings:
    """The job's and the domain's defaults for every request an engine builds; unset, the schemas' own (see above)."""

    max_tokens: int = DomainSpec.max_tokens
    temperature: float = DomainSpec.temperature
    top_p: float = DomainSpec.top_p
    stop: tuple[str, ...] = ()
    seed: int | None = GenerateJob.seed
    ignore_eos: bool = GenerateJob.ignore_eos
    system_prompt: str | None = DomainSpec.system_prompt
    thinking: bool = GenerateJob.thinking
    overflow: Overflow = GenerateJob.overflow  # prompts (or texts) longer than the context window
    query_task: str | None = None  # embeddings: every text is a query for this task
    response_format: dict[str, Any] | None = None  # job.response_format or job.schema: every record's constraint
    choice: tuple[str, ...] = ()  # job.choice: every record's labels

    @classmethod
    def from_config(cls, job: Any, domain: Any) -> Settings:
        """From the typed job and domain nodes (or their dataclasses); job values win where set."""
        job, domain = _typed(job), _typed(domain)

        def first(*values: Any) -> Any:
            return next((v for v in values if v is not None), None)

        return cls(
            max_tokens=int(first(getattr(job, "max_tokens", None), domain.max_tokens)),
            temperature=float(first(getattr(job, "temperature", None), domain.temperature)),
            top_p=float(first(getattr(job, "top_p", None), domain.top_p)),
            stop=tuple(getattr(job, "stop", None) or ()),
            seed=getattr(job, "seed", None),
            ignore_eos=bool(getattr(job, "ignore_eos", False)),
            system_prompt=domain.system_prompt,
            thinking=bool(getattr(job, "thinking", False)),
            overflow=Overflow(getattr(job, "overflow", Overflow.truncate)),  # search: queries are cut as texts are
            query_task=getattr(job, "query_task", None),
            **job_constraint(
                getattr(job, "response_format", None), getattr(job, "schema", None), getattr(job, "choice", None)
            ),
        )

    def request(
        self,
        *,
        messages: Sequence[Mapping[str, Any]] | None = None,
        prompt: str | None = None,
        chat: bool = True,
        params: Mapping[str, Any] | None = None,
        system_prompt: str | None = None,
        thinking: bool | None = None,
    ) -> GenerationRequest:
        """A request from a record's own params, falling back to these settings.

        The system prompt (``system_prompt``, else the domain's) is added only when the messages bring
        no system message of their own; a raw prompt (``chat=False``) gets no template and no system prompt.
        """
        params = dict(params or {})

        def pick(key: str) -> Any:
            return params[key] if params.get(key) is not None else getattr(self, key)

        system = self.system_prompt if system_prompt is None else system_prompt
        if chat:
            msgs = [dict(m) for m in messages] if messages is not None else [{"role": "user", "content": prompt or ""}]
            if system and not any(m.get("role") == "system" for m in msgs):
                msgs.insert(0, {"role": "system", "content": system})
            text: dict[str, Any] = {"messages": tuple(msgs)}
        else:
            text = {"prompt": prompt or ""}
        stop = pick("stop") or ()
        constraint: dict[str, Any] = {"response_format": self.response_format, "choice": self.choice}
        if params.get("response_format") or params.get("choice"):  # a record's own constraint replaces the job's
            constraint = {"response_format": params.get("response_format"), "choice": tuple(params.get("choice") or ())}
        return GenerationRequest(
            **text,
            max_tokens=int(pick("max_tokens")),
            temperature=float(pick("temperature")),
            top_p=float(pick("top_p")),
            stop=tuple([stop] if isinstance(stop, str) else stop),
            seed=pick("seed"),
            ignore_eos=bool(pick("ignore_eos")),
            thinking=self.thinking if thinking is None else bool(thinking),
            **constraint,
            logprobs=int(params.get("top_logprobs") or 0) if params.get("logprobs") else None,
        )


def _typed(node: Any) -> Any:
    """A config node as its dataclass (enums as enums), so settings never compare strings."""
    if isinstance(node, DictConfig):
        return OmegaConf.to_object(node)
    return node
