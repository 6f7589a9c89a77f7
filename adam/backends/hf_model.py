"""A transformers model and its tokenizer, loaded for one device and dtype, and the guard around its forward passes.

torch and transformers are imported inside the functions, so importing the backend stays cheap. The
guard is the one place a torch or transformers failure becomes a BackendError.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from adam.backends import hf_facts, hf_loading, hf_options, hf_tensors
from adam.errors import BackendError, BackendUnavailable, ConfigError, first_line
from adam.settings.config import HardwareSpec, ModelKind, SizeSpec

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)

# What torch and transformers raise for a request they cannot run (bad sampling values, shapes, OOM).
MODEL_FAILURES: tuple[type[Exception], ...] = (RuntimeError, ValueError, IndexError)


@dataclass
class LoadedModel:
    """A model and its tokenizer as loaded for one device and dtype."""

    model: Any
    tokenizer: Any
    folder: Path  # the HF directory it was loaded from
    device: str
    dtype: torch.dtype
    decoder: bool  # a causal LM (pools its last token by default when embedding)
    # one forward pass at a time: the generation scheduler's thread and the server's embedding worker share the model
    busy: threading.RLock = field(default_factory=threading.RLock, compare=False, repr=False)

    @property
    def eos_ids(self) -> list[int]:
        """Token ids that end a generation, the same ones generate() stops at."""
        eos = getattr(self.model.generation_config, "eos_token_id", None)
        if eos is None:
            eos = self.tokenizer.eos_token_id
        if eos is None:
            return []
        return [int(e) for e in eos] if isinstance(eos, (list, tuple)) else [int(eos)]


def load_tokenizer(folder: Path, model_name: str, trust_remote_code: bool) -> Any:
    """The tokenizer in ``folder``, with EOS as its pad token where it has none."""
    from transformers import AutoTokenizer

    try:
        tok = AutoTokenizer.from_pretrained(str(folder), trust_remote_code=trust_remote_code)
    except (OSError, ValueError, KeyError) as err:
        raise ConfigError(f"cannot load the tokenizer of {model_name}: {first_line(err)}") from err
    if tok.pad_token is None and tok.eos_token is not None:
        tok.pad_token = tok.eos_token  # batches need a pad token; EOS is masked out anyway
    return tok


def load_model(
    folder: Path,
    model_name: str,
    size: SizeSpec,
    hardware: HardwareSpec,
    tokenizer: Any,
    device: str,
    dtype: torch.dtype,
    *,
    trust_remote_code: bool,
    progress: bool,
) -> LoadedModel:
    """The weights in ``folder`` on ``device`` as ``dtype``, in eval mode; a causal LM for generation sizes."""
    import torch
    from transformers import AutoModel, AutoModelForCausalLM

    if hardware.threads:
        torch.set_num_threads(hardware.threads)
    auto = AutoModelForCausalLM if size.kind == ModelKind.generate else AutoModel
    log.info("loading %s (%s) on %s as %s", model_name, folder, device, str(dtype).removeprefix("torch."))
    try:
        extra = hf_options.load_kwargs(folder, size, hardware, device, dtype, trust_remote_code)
        with hf_loading.loading_bars(progress):
            model = auto.from_pretrained(
                str(folder), dtype=dtype, device_map=device, trust_remote_code=trust_remote_code, **extra
            )
    except torch.OutOfMemoryError as err:
        raise BackendUnavailable(f"out of memory loading {model_name} on {device}") from err
    except (OSError, ValueError, KeyError) as err:
        raise ConfigError(f"cannot load {model_name} from {folder}: {first_line(err)}") from err
    model.eval()
    decoder = size.kind == ModelKind.generate or hf_facts.is_decoder(model.config)
    return LoadedModel(model, tokenizer, folder, device, dtype, decoder)


@contextmanager
def running(lm: LoadedModel, what: str) -> Iterator[None]:
    """Around every forward pass: inference mode, the CPU kernels below, and the one place
    torch/transformers failures become BackendError (the base then retries per record)."""
    import torch

    plain_cpu = lm.device == "cpu" and lm.dtype == torch.float32
    try:
        with lm.busy, torch.inference_mode(), hf_tensors.without_onednn() if plain_cpu else contextlib.nullcontext():
            yield
    except MODEL_FAILURES as err:
        raise BackendError(f"{what} failed: {first_line(err)}") from err
