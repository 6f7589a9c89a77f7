"""ONNX Runtime for encoder embedders (backend.runtime=onnx): the export, its cache, and the forward pass.

The model is exported once from the local weights with ``torch.onnx.export(..., dynamo=True)`` and kept
in adam's cache under the sha256 of its weights and config (``<cache>/onnx/v<N>/<hash>/``), so a
changed file means a new export and no hub is ever asked. Every file there is written beside its
place and renamed into it, so an export cut short leaves nothing that a later run would load.
``backend.quantization=int8`` is onnxruntime's dynamic quantization of the float32 export: MatMul
weights to int8, one scale per output channel. ONNX replaces the forward pass only: the backend keeps
its tokenizer, length sorting, token-budget batching and pooling. onnxruntime, onnx and onnxscript
(the ``onnx`` extra) are imported inside the functions that need them.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import io
import logging
import threading
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from adam.atomic import atomic_path
from adam.backends import hf_facts, hf_loading
from adam.errors import BackendError, ConfigError, first_line, install_hint
from adam.hashing import cached_file_sha256
from adam.settings.config import ONNX_ARCHITECTURES, OnnxQuantization

log = logging.getLogger(__name__)

EXPORT_VERSION = 1  # part of the cache path: a change to what is exported (inputs, outputs) never meets an old file
_MODULES = ("onnxruntime", "onnx", "onnxscript")
_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth")
_KEY_FILES = ("config.json",)  # what else decides the graph besides the weights
_export_lock = threading.Lock()


def missing_modules() -> list[str]:
    """The modules runtime=onnx needs that are not installed (found without importing them)."""
    return [name for name in _MODULES if importlib.util.find_spec(name) is None]


def refusal(model_type: str | None, model: str) -> str | None:
    """Why ``model`` (config.json's model_type) may not run on ONNX Runtime; None when it may."""
    if model_type in ONNX_ARCHITECTURES:
        return None
    allowed = ", ".join(sorted(ONNX_ARCHITECTURES))
    what = f"a {model_type} model" if model_type else "a model of unknown architecture"
    return (
        f"backend.runtime=onnx runs encoder embedders ({allowed}) only; {model} is {what}, whose ONNX export is not "
        "known to give torch's vectors: use backend.runtime=torch"
    )


def check_folder(folder: Path, model: str) -> None:
    """Refuse (ConfigError, one line) a model directory that runtime=onnx cannot run, or a missing dependency."""
    config = hf_facts.read_json(folder / "config.json")
    model_type = config.get("model_type") if isinstance(config, dict) else None
    why = refusal(model_type, model)
    if why:
        raise ConfigError(why)
    missing = missing_modules()
    if missing:
        raise ConfigError(
            f"backend.runtime=onnx needs {', '.join(missing)}: {install_hint('onnx')} (or use backend.runtime=torch)"
        )


def weights_sha256(folder: Path, cache_dir: Path) -> str:
    """One sha256 over the weight files and config.json of ``folder`` (each file hashed once, then remembered)."""
    index = cache_dir / "onnx" / "hashes.json"
    files = sorted(p for p in folder.iterdir() if p.suffix in _WEIGHT_SUFFIXES or p.name in _KEY_FILES)
    files = [p for p in files if p.is_file()]
    if not any(p.suffix in _WEIGHT_SUFFIXES for p in files):
        raise ConfigError(f"{folder} holds no weight files to export to ONNX")
    digest = hashlib.sha256()
    for path in files:
        digest.update(f"{path.name}\0{cached_file_sha256(path, index)}\n".encode())
    return digest.hexdigest()


def export_dir(folder: Path, cache_dir: Path) -> Path:
    """Where the exports of the weights in ``folder`` live (they may not exist yet)."""
    return cache_dir / "onnx" / f"v{EXPORT_VERSION}" / weights_sha256(folder, cache_dir)[:32]


def model_file(directory: Path, quantization: OnnxQuantization) -> Path:
    """The ONNX file of one quantization in an export directory."""
    return directory / ("model.onnx" if quantization == OnnxQuantization.none else f"model.{quantization.value}.onnx")


def ensure_export(folder: Path, cache_dir: Path, quantization: OnnxQuantization) -> Path:
    """The ONNX file for ``folder``'s weights, exported (and quantized) the first time; a ConfigError in one line."""
    directory = export_dir(folder, cache_dir)
    target = model_file(directory, quantization)
    if target.is_file():
        return target
    with _export_lock:
        base = model_file(directory, OnnxQuantization.none)
        if not base.is_file():
            log.info("exporting %s to ONNX (once, into %s)", folder, directory)
            with atomic_path(base) as tmp:
                export_float32(folder, tmp)
        if quantization == OnnxQuantization.int8 and not target.is_file():
            log.info("quantizing the ONNX export of %s to int8 (once)", folder)
            with atomic_path(target) as tmp:
                quantize_int8(base, tmp)
    return target


@contextlib.contextmanager
def _quiet_exporter() -> Iterator[None]:
    """The exporter prints its steps on stdout, where some jobs write results, and warns of what it does not use
    (torchvision, its own deprecations): a user cannot act on any of it."""
    noisy = [logging.getLogger(name) for name in ("torch.onnx", "torch.onnx._internal.exporter._registration")]
    levels = [lg.level for lg in noisy]
    for lg in noisy:
        lg.setLevel(logging.ERROR)
    try:
        with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        for lg, level in zip(noisy, levels, strict=True):
            lg.setLevel(level)


def export_float32(folder: Path, dest: Path) -> None:
    """Export the encoder in ``folder`` to ``dest``: (input_ids, attention_mask) -> last_hidden_state, any batch
    and length."""
    import torch
    from transformers import AutoModel

    class Encoder(torch.nn.Module):
        """The forward pass the torch runtime runs (base model, no head), with the backend's two inputs."""

        def __init__(self, model: Any) -> None:
            super().__init__()
            self.model = model

        def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
            return self.model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state

    try:
        with hf_loading.loading_bars(False):
            model = AutoModel.from_pretrained(str(folder), dtype=torch.float32, device_map="cpu").eval()
    except (OSError, ValueError, KeyError) as err:
        raise ConfigError(f"cannot load {folder} to export it to ONNX: {first_line(err)}") from err
    # two rows of different lengths, so neither dimension is taken for a constant
    ids = torch.ones((2, 16), dtype=torch.long)
    mask = torch.ones((2, 16), dtype=torch.long)
    mask[1, 9:] = 0
    batch, length = torch.export.Dim("batch"), torch.export.Dim("length")
    try:
        with torch.inference_mode(False), torch.no_grad(), _quiet_exporter():
            program = torch.onnx.export(
                Encoder(model.base_model).eval(),
                (ids, mask),
                dynamo=True,
                input_names=["input_ids", "attention_mask"],
                output_names=["last_hidden_state"],
                dynamic_shapes=({0: batch, 1: length}, {0: batch, 1: length}),
                external_data=False,
                verbose=False,
            )
            assert program is not None
            program.save(str(dest))
    except (RuntimeError, ValueError, TypeError, AssertionError) as err:
        raise ConfigError(f"cannot export {folder} to ONNX: {first_line(err)}; use backend.runtime=torch") from err


def quantize_int8(source: Path, dest: Path) -> None:
    """Dynamic int8 quantization of ``source``'s MatMul weights, one scale per output channel."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)  # the quantizer suggests its pre-processing on the root logger, every time
    try:
        quantize_dynamic(
            str(source), str(dest), per_channel=True, weight_type=QuantType.QInt8, op_types_to_quantize=["MatMul"]
        )
    except (RuntimeError, ValueError) as err:
        raise ConfigError(f"cannot quantize {source} to int8: {first_line(err)}") from err
    finally:
        root.setLevel(level)


class OnnxEncoder:
    """An ONNX Runtime session on the CPU over one export: token ids and mask in, last hidden states out."""

    def __init__(self, path: Path, threads: int | None = None) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or 0  # 0: onnxruntime's default, one per physical core
        options.inter_op_num_threads = 1
        options.enable_mem_pattern = False  # a pattern per input shape: every batch has its own (less peak memory)
        options.log_severity_level = 3  # errors only
        self.path = path
        try:
            self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        except Exception as err:  # onnxruntime's own exception types derive from Exception only
            raise ConfigError(
                f"cannot load the ONNX export {path}: {first_line(err)}; delete it to export again"
            ) from err

    def hidden(self, input_ids: Any, attention_mask: Any) -> Any:
        """last_hidden_state (batch x length x width, float32 numpy) for int64 numpy ids and mask."""
        try:
            return self.session.run(None, {"input_ids": input_ids, "attention_mask": attention_mask})[0]
        except Exception as err:  # onnxruntime raises Fail, InvalidArgument, RuntimeException: all bare Exceptions
            raise BackendError(f"embedding failed on ONNX Runtime: {first_line(err)}") from err
