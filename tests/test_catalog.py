"""The model catalog (conf/size): real hub ids and Ollama tags, the facts the memory estimates need,
size.family for size=auto, the hardware tiers, gated-repo errors and the GGUF writer's refusals."""

from __future__ import annotations

import json
import re
from pathlib import Path

import httpx2
import pytest
from helpers import compose_cfg
from huggingface_hub.errors import GatedRepoError, HfHubHTTPError, RepositoryNotFoundError

from adam.backends import hf_loading
from adam.errors import ConfigError, ModelNotFoundError, UnsupportedError
from adam.jobs.share import share_model
from adam.planning import tiers
from adam.planning.hardware import Environment, GpuInfo, HardwareReport
from adam.planning.memory_estimates import GIB, check_long_context, estimate
from adam.planning.size_catalog import catalog, load_size
from adam.planning.sizing import resolve_auto
from adam.run.runner import build_backend, run
from adam.settings.catalog import sizes as size_options
from adam.settings.config import ModelKind, Thinking
from adam.sharing.gguf_export import check_architecture, export_gguf

HF_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*/[A-Za-z0-9][A-Za-z0-9_.-]*$")  # org/name
OLLAMA_TAG = re.compile(r"^[a-z0-9][a-z0-9._-]*(/[a-z0-9][a-z0-9._-]*)?:[A-Za-z0-9][A-Za-z0-9._-]*$")  # name:tag
# Ids from the design's PR table that do not exist on the hub
DESIGN_IDS = {"Qwen/Qwen3-0.6B-Chat", "Qwen/Qwen3-1.7B-Chat", "Qwen/Qwen3-4B-Chat", "Qwen/Qwen3-8B-Chat"}
SIZES = {name: load_size(name) for name in size_options()}

# name: (hf_id, ollama_tag, context, layers, KV heads, head size, family, thinking), from the models' config.json
# and cards (see each YAML's comments)
FACTS = {
    "tinyllama": ("TinyLlama/TinyLlama-1.1B-Chat-v1.0", "tinyllama:1.1b", 2048, 22, 4, 64, "llama", "none"),
    "phi3_mini": ("microsoft/Phi-3-mini-4k-instruct", "phi3:mini", 4096, 32, 32, 96, "phi", "none"),
    "phi3_mini_128k": ("microsoft/Phi-3-mini-128k-instruct", "phi3:mini-128k", 131072, 32, 32, 96, "phi", "none"),
    "gemma2_2b": ("google/gemma-2-2b-it", "gemma2:2b", 8192, 26, 4, 256, "gemma", "none"),
    "gemma2_9b": ("google/gemma-2-9b-it", "gemma2:9b", 8192, 42, 8, 256, "gemma", "none"),
    "mistral_7b": (
        "mistralai/Mistral-7B-Instruct-v0.3",
        "mistral:7b-instruct-v0.3-q4_K_M",
        32768,
        32,
        8,
        128,
        "mistral",
        "none",
    ),
    "llama3_8b": ("meta-llama/Meta-Llama-3-8B-Instruct", "llama3:8b", 8192, 32, 8, 128, "llama", "none"),
    "llama3_1_8b": ("meta-llama/Llama-3.1-8B-Instruct", "llama3.1:8b", 131072, 32, 8, 128, "llama", "none"),
    "llama3_70b": ("meta-llama/Meta-Llama-3-70B-Instruct", "llama3:70b", 8192, 80, 8, 128, "llama", "none"),
}
QWEN_2507 = {
    "qwen3_4b_instruct_2507": ("Qwen/Qwen3-4B-Instruct-2507", 36, 8, "none"),
    "qwen3_4b_thinking_2507": ("Qwen/Qwen3-4B-Thinking-2507", 36, 8, "always"),
    "qwen3_30b_a3b_instruct_2507": ("Qwen/Qwen3-30B-A3B-Instruct-2507", 48, 4, "none"),
    "qwen3_30b_a3b_thinking_2507": ("Qwen/Qwen3-30B-A3B-Thinking-2507", 48, 4, "always"),
    "qwen3_235b_a22b_instruct_2507": ("Qwen/Qwen3-235B-A22B-Instruct-2507", 94, 4, "none"),
    "qwen3_235b_a22b_thinking_2507": ("Qwen/Qwen3-235B-A22B-Thinking-2507", 94, 4, "always"),
}
# Dense shapes from config.json: vocab, hidden, intermediate, heads, norms per layer, tied embeddings
SHAPES = {
    "tinyllama": (32000, 2048, 5632, 32, 2, False),
    "phi3_mini": (32064, 3072, 8192, 32, 2, False),
    "gemma2_2b": (256000, 2304, 9216, 8, 4, True),
    "gemma2_9b": (256000, 3584, 14336, 16, 4, True),
    "mistral_7b": (32768, 4096, 14336, 32, 2, False),
    "llama3_8b": (128256, 4096, 14336, 32, 2, False),
    "llama3_70b": (128256, 8192, 28672, 64, 2, False),
}
GATED = ["llama3_8b", "llama3_1_8b", "llama3_70b", "gemma2_2b", "gemma2_9b", "mistral_7b"]


@pytest.mark.parametrize("name", sorted(SIZES))
def test_every_catalog_id_has_the_hubs_shape(name: str) -> None:
    spec = SIZES[name]
    assert spec.hf_id is None or HF_ID.match(spec.hf_id), spec.hf_id
    assert spec.ollama_tag is None or OLLAMA_TAG.match(spec.ollama_tag), spec.ollama_tag
    assert spec.hf_id not in DESIGN_IDS


def test_the_shape_checks_catch_what_they_should() -> None:
    assert not HF_ID.match("Qwen3-0.6B") and not HF_ID.match("Qwen/Qwen3 0.6B") and not HF_ID.match("a/b/c")
    assert not OLLAMA_TAG.match("qwen3") and not OLLAMA_TAG.match("Qwen3:0.6b") and OLLAMA_TAG.match("qwen3:0.6b")


@pytest.mark.parametrize(("name", "facts"), FACTS.items())
def test_the_design_picks_carry_their_published_facts(name: str, facts: tuple) -> None:
    spec = SIZES[name]
    got = (spec.hf_id, spec.ollama_tag, spec.context_length, spec.num_layers, spec.num_kv_heads, spec.head_dim)
    assert (*got, spec.family, spec.thinking.value) == facts
    assert spec.kind == ModelKind.generate and spec.architecture and spec.parameters


@pytest.mark.parametrize(("name", "shape"), SHAPES.items())
def test_parameter_counts_follow_from_the_config_shapes(name: str, shape: tuple) -> None:
    vocab, hidden, intermediate, heads, norms, tied = shape
    spec = SIZES[name]
    head, kv = spec.head_dim, spec.num_kv_heads
    attention = 2 * hidden * heads * head + 2 * hidden * kv * head
    per_layer = attention + 3 * hidden * intermediate + norms * hidden
    assert spec.parameters == spec.num_layers * per_layer + vocab * hidden * (1 if tied else 2) + hidden


@pytest.mark.parametrize(("name", "facts"), QWEN_2507.items())
def test_the_2507_models_have_256k_context_and_a_fixed_thinking_mode(name: str, facts: tuple) -> None:
    spec = SIZES[name]
    hf_id, layers, kv, thinking = facts
    assert (spec.hf_id, spec.num_layers, spec.num_kv_heads, spec.thinking.value) == (hf_id, layers, kv, thinking)
    assert spec.context_length == 262144 and spec.long_context_length is None and spec.family == "qwen3_2507"
    assert spec.ollama_tag.endswith("-2507-q4_K_M") and ("thinking" in spec.ollama_tag) == (thinking == "always")


def test_every_qwen3_hybrid_switches_thinking_and_others_say_how_they_think() -> None:
    for spec in catalog(ModelKind.generate):  # size=auto's default family
        assert (spec.family, spec.thinking) == ("qwen3", Thinking.switch), spec.name
    assert SIZES["demo"].thinking == Thinking.none and SIZES["local"].thinking == Thinking.none


def test_long_context_facts_the_loaders_need() -> None:
    assert (SIZES["phi3_mini_128k"].rope_scaling, SIZES["llama3_1_8b"].rope_scaling) == ("longrope", "llama3")
    assert SIZES["phi3_mini"].rope_scaling is None and SIZES["llama3_8b"].rope_scaling is None
    spec = load_size("phi3_mini_128k")
    spec.long_context = True
    with pytest.raises(ConfigError, match=r"already 131,072 tokens") as err:
        check_long_context(spec)
    assert "\n" not in str(err.value)


def test_gemma2s_sliding_window_halves_its_kv_cache_growth() -> None:
    gemma = load_size("gemma2_9b")
    est = estimate(gemma, "bfloat16", context=8192, batch=2)
    per_token = 2 * 8 * 256 * 2  # K and V, 8 KV heads of 256, 2 bytes
    assert est.kv_cache_gb == pytest.approx(per_token * (21 * 8192 + 21 * 4096) * 2 / GIB)
    short = estimate(gemma, "bfloat16", context=4096, batch=2)
    assert short.kv_cache_gb == pytest.approx(per_token * 42 * 4096 * 2 / GIB)  # within the window: all layers grow
    gemma.sliding_window = None
    assert estimate(gemma, "bfloat16", context=8192, batch=2).kv_cache_gb == pytest.approx(2 * short.kv_cache_gb)


# ----------------------------------------------------------------- size.family
def _machine(memory_gb: float) -> HardwareReport:
    env = Environment(False, False, False, False, "/hf", False, "http://127.0.0.1:11434", "/adam")
    gpu = GpuInfo("gpu", memory_gb, memory_gb, True)
    return HardwareReport(8, 64.0, 64.0, [gpu], False, "cuda", "bfloat16", "test", memory_gb, False, env)


def _auto(*overrides: str, memory_gb: float = 24):
    cfg = compose_cfg("size=auto", "backend=echo", "job.batch_size=1", *overrides)
    resolve_auto(cfg, report=_machine(memory_gb))
    return cfg.size


def test_size_auto_stays_on_qwen3_unless_size_family_widens_it() -> None:
    assert _auto().family == "qwen3"
    assert _auto(memory_gb=200).name == "qwen3_moe_large"
    picks = {family: _auto(f"size.family={family}") for family in ("llama", "gemma", "phi", "mistral", "qwen3_2507")}
    assert {f: s.name for f, s in picks.items()} == {
        "llama": "llama3_1_8b",  # ties with llama3_8b; the name sorting first wins
        "gemma": "gemma2_9b",
        "phi": "phi3_mini",
        "mistral": "mistral_7b",
        "qwen3_2507": "qwen3_4b_instruct_2507",  # Instruct before its Thinking twin
    }
    assert all(s.family == f and "fits" in s.selected_by for f, s in picks.items())
    wide = _auto("size.family=any", memory_gb=200)
    assert wide.name == "qwen3_235b_a22b_instruct_2507" and wide.family == "qwen3_2507"


def test_an_unknown_family_names_the_choices() -> None:
    with pytest.raises(ConfigError, match=r"size.family=falcon has no generate model: choose one of gemma, .*any"):
        _auto("size.family=falcon")
    with pytest.raises(ConfigError, match=r"size.family=llama has no embed model: choose one of qwen3, any"):
        _auto("size.family=llama", "job=embed")


# ----------------------------------------------------------------- hardware tiers
def test_the_tiers_are_the_designs_with_their_picks() -> None:
    table = tiers.tier_table(ram_gb=16)
    assert [t["tier"] for t in table] == ["CPU only", "2-4 GB GPU", "8-16 GB GPU", "24 GB and more"]
    picks = {t["profile"]: [p["size"] for p in t["picks"]] for t in table}
    assert {"tinyllama", "qwen3_small", "phi3_mini", "gemma2_2b"} == set(picks["cpu"])
    assert {"mistral_7b", "llama3_8b", "gemma2_9b"} <= set(picks["gpu_mid"])
    assert {"qwen3_xl", "llama3_70b"} == set(picks["gpu_high"])
    assert all(p in SIZES for ps in picks.values() for p in ps)
    fits = {(t["profile"], p["size"]): p for t in table for p in t["picks"]}
    assert fits[("cpu", "tinyllama")]["fits"] and fits[("cpu", "tinyllama")]["mode"] == "float32"
    assert fits[("gpu_low", "qwen3_medium")]["mode"] == "4bit" and fits[("gpu_low", "qwen3_medium")]["max_batch"] > 1
    assert fits[("gpu_high", "llama3_70b")]["fits"] is False  # 70B does not fit 24 GB even at 4 bits
    assert tiers.tier_table()[0]["picks"][0]["fits"] is None  # no RAM given: the CPU tier is estimates only


def test_a_profile_keeps_what_it_inherits() -> None:
    low = tiers.load_profile("gpu_low")
    assert (low.memory_gb, low.quantization, low.attention.value, low.tier) == (4, "4bit", "sdpa", "2-4 GB GPU")
    assert low.picks[0] == "qwen3_medium"


def test_job_info_shows_the_tiers(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    summary = run(compose_cfg("backend=echo", "job=info", "size=gemma2_2b", run_dir=tmp_path))
    assert summary.exit_code == 0
    doc = json.loads((tmp_path / "info.json").read_text(encoding="utf-8"))
    assert [t["profile"] for t in doc["tiers"]] == list(tiers.TIER_PROFILES)
    assert doc["tiers"][0]["memory_gb"] is not None  # the CPU tier against this machine's RAM


# ----------------------------------------------------------------- gated repos
def _hub_error(kind: type[HfHubHTTPError], status: int, hf_id: str) -> HfHubHTTPError:
    request = httpx2.Request("GET", f"https://huggingface.co/{hf_id}/resolve/main/config.json")
    message = f"{status} Client Error. (Request ID: Root=1)\n\nCannot access gated repo for url {request.url}."
    return kind(message, response=httpx2.Response(status, request=request))


@pytest.fixture
def online_hub(monkeypatch: pytest.MonkeyPatch) -> None:
    """A hub that answers, with nothing cached: the resolver goes on to download."""
    monkeypatch.setattr(hf_loading, "hub_offline", lambda: False)
    monkeypatch.setattr(hf_loading, "probe_endpoint", lambda endpoint, timeout=3.0: None)
    monkeypatch.setattr(hf_loading, "cached_snapshot", lambda hf_id, revision: None)


@pytest.mark.parametrize("name", GATED)
@pytest.mark.parametrize("status", [401, 403])
def test_a_refused_gated_repo_names_hf_token(name: str, status: int, online_hub, monkeypatch) -> None:
    spec = load_size(name)
    import huggingface_hub

    def refuse(*args, **kwargs):
        raise _hub_error(GatedRepoError, status, spec.hf_id)

    monkeypatch.setattr(huggingface_hub, "snapshot_download", refuse)
    with pytest.raises(ModelNotFoundError) as err:
        hf_loading.resolve_source(spec)
    message = str(err.value)
    assert "\n" not in message and "HF_TOKEN" in message and f"https://huggingface.co/{spec.hf_id}" in message


def test_a_missing_repo_and_a_server_error_say_what_they_are(online_hub, monkeypatch) -> None:
    import huggingface_hub

    spec = load_size("llama3_8b")
    for kind, status, expected in ((RepositoryNotFoundError, 401, "no such repo"), (HfHubHTTPError, 500, "500")):

        def fail(*args, kind=kind, status=status, **kwargs):
            raise _hub_error(kind, status, spec.hf_id)

        monkeypatch.setattr(huggingface_hub, "snapshot_download", fail)
        with pytest.raises(ModelNotFoundError, match=expected) as err:
            hf_loading.resolve_source(spec)
        assert ("HF_TOKEN" in str(err.value)) == (status == 401) and "\n" not in str(err.value)


# ----------------------------------------------------------------- the GGUF writer
@pytest.mark.parametrize("architecture", ["gemma2", "phi3", "mistral", "falcon"])
def test_the_gguf_writer_refuses_an_architecture_it_cannot_write_in_one_line(architecture: str, tmp_path) -> None:
    (tmp_path / "config.json").write_text(json.dumps({"model_type": architecture}), encoding="utf-8")
    with pytest.raises(UnsupportedError, match=f"unsupported architecture {architecture}: adam can export") as err:
        export_gguf(tmp_path, tmp_path / "out.gguf")
    assert "\n" not in str(err.value) and "backend=ollama" in str(err.value)
    assert not (tmp_path / "out.gguf").exists()
    for ok in ("qwen3", "qwen2", "llama"):
        check_architecture(ok)


@pytest.mark.parametrize("name", ["gemma2_2b", "phi3_mini_128k", "mistral_7b"])
def test_job_share_refuses_those_before_any_download(name: str) -> None:
    cfg = compose_cfg("backend=echo", f"size={name}", "job=share", "share.register=false")
    backend = build_backend(cfg)  # the echo backend has no weights: reaching export_weights would say so
    with pytest.raises(UnsupportedError, match=f"unsupported architecture {SIZES[name].architecture}"):
        share_model(cfg.share, backend)
