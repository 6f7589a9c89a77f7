"""Memory estimates, size=auto, quantization=auto and long context, on fake hardware reports."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import EXAMPLES, compose_cfg

from adam.errors import ConfigError, ModelNotFoundError
from adam.planning import hardware
from adam.planning.cpu_speed import CpuSpeed, tokens_per_s
from adam.planning.hardware import Environment, GpuInfo, HardwareReport
from adam.planning.memory_estimates import GIB, estimate, memory_table
from adam.planning.memory_plan import make_plan
from adam.planning.size_catalog import catalog, load_size
from adam.planning.sizing import recommendations, resolve_auto
from adam.run.runner import run
from adam.settings.config import HardwareSpec, ModelKind, SizeSpec, to_spec

ENV = Environment(False, False, False, False, "/hf", False, "http://127.0.0.1:11434", "/adam")
FAST = CpuSpeed(5000.0, 500.0, "test")  # fast enough for any model that fits: memory alone decides
TWO_CORES = CpuSpeed(60.0, 14.0, "test")  # what a 2-core VM measured


def machine(device: str, memory_gb: float, speed: CpuSpeed = FAST) -> HardwareReport:
    """A detected machine: a CPU with ``memory_gb`` of free RAM, or one GPU with that much free."""
    gpus = [GpuInfo("gpu", memory_gb, memory_gb, True)] if device == "cuda" else []
    ram = 64.0 if device == "cuda" else memory_gb
    return HardwareReport(
        8, ram, ram, gpus, device == "mps", device, "bfloat16", "test", memory_gb, False, ENV, speed=speed
    )


def resolved(*overrides: str, report: HardwareReport, **kwargs: object) -> tuple[object, dict | None]:
    cfg = compose_cfg(*overrides, "job.batch_size=8")
    decided = resolve_auto(cfg, report=report, **kwargs)
    return cfg, decided


def test_estimate_is_weights_plus_kv_cache_plus_overhead() -> None:
    xl = load_size("qwen3_xl")
    est = estimate(xl, "bfloat16", context=2048, batch=8)
    assert est.weights_gb == pytest.approx(8.2e9 * 2 / GIB)
    assert est.kv_cache_gb == pytest.approx(2 * 36 * 8 * 128 * 2 * 2048 * 8 / GIB)  # K and V, 36 layers, 8 KV heads
    assert est.total_gb == pytest.approx(est.weights_gb * 1.1 + 0.5 + est.kv_cache_gb)
    f32 = estimate(xl, "float32", context=2048, batch=8)
    assert f32.kv_cache_gb == pytest.approx(2 * est.kv_cache_gb)
    table = memory_table(xl, context=2048, batch=8)
    totals = [table[m]["total_gb"] for m in ("float32", "bfloat16", "8bit", "4bit")]
    assert totals == sorted(totals, reverse=True) and totals[-1] < totals[0] / 3


def test_kv_cache_is_capped_by_the_context_and_absent_for_embedders() -> None:
    small = load_size("qwen3_small")
    assert estimate(small, "bfloat16", context=10**6, batch=1).kv_cache_gb == pytest.approx(
        estimate(small, "bfloat16", context=32768, batch=1).kv_cache_gb
    )
    assert estimate(load_size("qwen3_embedding_8b"), "bfloat16", context=4096, batch=32).kv_cache_gb == 0
    assert estimate(SizeSpec(name="x"), "bfloat16", context=1, batch=1) is None  # no parameter count


def test_catalog_has_every_qwen3_size_with_architecture() -> None:
    generate = [s.name for s in catalog(ModelKind.generate)]
    assert generate[0] == "qwen3_moe_large" and generate[-1] == "qwen3_small" and len(generate) == 8
    embed = catalog(ModelKind.embed)
    assert [s.hf_id for s in embed] == [
        "Qwen/Qwen3-Embedding-8B",
        "Qwen/Qwen3-Embedding-4B",
        "Qwen/Qwen3-Embedding-0.6B",
    ]
    assert all(s.pooling.value == "last" and s.query_instruction == "Instruct: {task}\nQuery:" for s in embed)
    moe = load_size("qwen3_moe_small")
    assert (moe.parameters, moe.active_parameters, moe.num_kv_heads) == (30_500_000_000, 3_300_000_000, 4)
    long = {s.name: s.long_context_length for s in catalog(ModelKind.generate)}
    assert long["qwen3_small"] is None and long["qwen3_medium"] is None
    assert {long[n] for n in long if n not in ("qwen3_small", "qwen3_medium")} == {131072}


def _fits_and_next_does_not(cfg, report: HardwareReport) -> None:
    """The pick fits the budget, and no bigger catalog model fits in any allowed mode."""
    plan = make_plan(cfg, report)
    spec = to_spec(SizeSpec, cfg.size)
    assert plan.first_fit(spec) is not None
    for bigger in catalog(spec.kind):
        if bigger.parameters > spec.parameters:
            assert plan.first_fit(bigger) is None, bigger.name


@pytest.mark.parametrize(
    ("overrides", "device", "memory", "size", "quantization"),
    [
        ((), "cpu", 23, "qwen3_medium", "none"),  # float32 on a CPU
        (("domain=code",), "cpu", 23, "qwen3_small", "none"),  # code reserves 4x the KV cache
        ((), "cuda", 24, "qwen3_xxl", "4bit"),
        ((), "cuda", 80, "qwen3_xxxl", "8bit"),
        (("hardware=gpu_low",), "cpu", 64, "qwen3_small", "4bit"),  # the profile's 4 GB, not the detected RAM
        (("hardware=gpu_mid",), "cpu", 64, "qwen3_xl", "4bit"),
        (("hardware=gpu_high",), "cpu", 64, "qwen3_xxl", "4bit"),
        (("job=embed",), "cpu", 23, "qwen3_embedding_4b", "none"),
        (("backend=ollama",), "cpu", 23, "qwen3_xxl", "4bit"),  # Ollama serves 4-bit GGUFs
    ],
)
def test_size_auto_picks_the_largest_that_fits(
    overrides: tuple[str, ...], device: str, memory: float, size: str, quantization: str
) -> None:
    report = machine(device, memory)
    cfg, decided = resolved("size=auto", "backend=echo", *overrides, report=report)
    assert (cfg.size.name, cfg.hardware.quantization) == (size, quantization)
    assert decided["size"] == size and size in cfg.size.selected_by and "fits" in cfg.size.selected_by
    assert cfg.backend.size.name == size  # the backend's ${size} follows the pick
    _fits_and_next_does_not(cfg, report)


def test_size_auto_says_when_nothing_fits() -> None:
    with pytest.raises(ConfigError, match=r"no generate model .* fits .* qwen3_small, needs"):
        resolved("size=auto", "backend=echo", report=machine("cpu", 1))


def test_domain_preferred_size_wins_when_it_fits() -> None:
    cfg, _ = resolved("size=auto", "backend=echo", "+domain.preferred_size=qwen3_small", report=machine("cpu", 23))
    assert cfg.size.name == "qwen3_small" and "prefers it" in cfg.size.selected_by
    cfg, _ = resolved("size=auto", "backend=echo", "+domain.preferred_size=qwen3_xxxl", report=machine("cpu", 23))
    assert cfg.size.name == "qwen3_medium"  # preferred but too big


def test_size_auto_keeps_its_overrides_and_long_context_rules_out_small_models() -> None:
    with pytest.raises(ConfigError, match="no generate model"):  # qwen3_medium would fit, but has no YaRN mode
        resolved("size=auto", "backend=echo", "size.long_context=true", report=machine("cpu", 23))
    cfg, _ = resolved("size=auto", "backend=echo", "size.long_context=true", report=machine("cpu", 40))
    assert (cfg.size.name, cfg.size.long_context) == ("qwen3_large", True)
    cfg, _ = resolved("size=auto", "backend=echo", "job=embed", "size.dimensions=256", report=machine("cpu", 23))
    assert cfg.size.dimensions == 256 and cfg.size.name.startswith("qwen3_embedding")


def test_huggingface_offline_with_nothing_cached_names_what_would_fit(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelNotFoundError) as err:
        resolved("size=auto", report=machine("cpu", 23), cached=lambda spec: False)
    message = str(err.value)
    assert "HF_HUB_OFFLINE" in message and "would fit: qwen3_medium (Qwen/Qwen3-1.7B" in message
    assert "qwen3_small" in message and "\n" not in message
    cfg, _ = resolved("size=auto", report=machine("cpu", 23), cached=lambda spec: spec.name == "qwen3_small")
    assert cfg.size.name == "qwen3_small"  # the largest that fits and is cached


@pytest.mark.parametrize("size", ["qwen3_small", "qwen3_medium"])
def test_long_context_refused_below_4b_before_anything_loads(size: str, tmp_path: Path) -> None:
    cfg = compose_cfg(f"size={size}", "size.long_context=true", "hardware=cpu", run_dir=tmp_path)
    with pytest.raises(ConfigError, match=r"has no long-context mode.*4B"):
        run(cfg)
    assert not (tmp_path / "manifest.json").exists()


def test_quantization_auto_for_an_explicit_size() -> None:
    cfg, decided = resolved("size=qwen3_xl", "backend=echo", "hardware=gpu_high", report=machine("cpu", 64))
    assert cfg.hardware.quantization == "8bit" and decided["quantization"] == "8bit"  # bf16 needs ~19.5 of 19.2
    cfg, _ = resolved("size=qwen3_small", "backend=echo", "hardware=gpu_high", report=machine("cpu", 64))
    assert cfg.hardware.quantization == "none"
    cfg, _ = resolved("size=qwen3_xxxl", "backend=echo", report=machine("cpu", 8))
    assert cfg.hardware.quantization == "none"  # bitsandbytes is not chosen automatically off CUDA


def test_a_wrong_quantization_fails_in_one_line() -> None:
    with pytest.raises(ConfigError, match=r"hardware.quantization=3bit is not one of auto \| none \| 8bit \| 4bit"):
        resolved("hardware.quantization=3bit", report=machine("cpu", 8))


@pytest.fixture
def fake_machine(tmp_path: Path) -> Iterator[None]:
    """Detection in this process reads a fake 23 GiB CPU machine."""
    (tmp_path / "root" / "proc").mkdir(parents=True)
    (tmp_path / "root" / "proc" / "meminfo").write_text(f"MemTotal: {32 << 20} kB\nMemAvailable: {23 << 20} kB\n")
    probe = hardware.Probe(root=tmp_path / "root", env={}, gpus=list, mps=lambda: False, speed=lambda: FAST)
    hardware.use_probe(probe)
    yield
    hardware.use_probe(None)


def test_run_records_the_pick_in_the_manifest(fake_machine: None, tmp_path: Path) -> None:
    cfg = compose_cfg("size=auto", "backend=echo", "job.batch_size=8", f"job.input={EXAMPLES / 'prompts.jsonl'}")
    cfg.hydra.run.dir = str(tmp_path / "run")
    summary = run(cfg)
    doc = json.loads((summary.run_dir / "manifest.json").read_text())
    assert doc["config"]["size"]["name"] == "qwen3_medium"
    assert doc["config"]["size"]["selected_by"].startswith("qwen3_medium: ")
    assert doc["config"]["hardware"]["quantization"] == "none"
    assert doc["peak_memory_mb"]["rss"] > 0


def test_info_prints_hardware_environment_and_recommendations(fake_machine: None, tmp_path: Path, capsys) -> None:
    cfg = compose_cfg("job=info", "job.format=json", "backend=echo", "size=qwen3_xl", run_dir=tmp_path)
    run(cfg)
    printed = json.loads(capsys.readouterr().out)
    assert printed == json.loads((tmp_path / "info.json").read_text())
    assert printed["detected"]["ram_available_gb"] == pytest.approx(23.0)
    assert printed["detected"]["profile"] == "cpu" and printed["environment"]["docker"] is False
    assert set(printed["environment"]) >= {"hf_cache", "ollama_host", "wsl", "devcontainer"}
    modes = printed["memory_estimate_gb"]["modes"]
    assert modes["4bit"]["total_gb"] < modes["8bit"]["total_gb"] < modes["bfloat16"]["total_gb"]
    recommended = printed["recommended"]
    assert recommended["huggingface"]["generate"]["size"] == "qwen3_small"  # float32, 32 x 2048 tokens
    assert recommended["huggingface"]["generate"]["batch"] == 32  # job=generate's batch_size, as size=auto's
    assert recommended["ollama"]["generate"]["mode"] == "4bit"
    embed = recommended["huggingface"]["embed"]
    assert embed["size"].startswith("qwen3_embedding") or (embed["size"] == "minilm" and "bundled" in embed["why"])


@pytest.mark.parametrize(
    "overrides",
    [(), ("domain=code",), ("hardware.memory_gb=60",), ("hardware=gpu_mid",), ("+domain.preferred_size=qwen3_small",)],
)
def test_info_recommends_what_size_auto_picks(
    fake_machine: None, tmp_path: Path, capsys, overrides: tuple[str, ...]
) -> None:
    """job=info planned for 8 sequences while size=auto planned for job.batch_size (32): they disagreed."""
    cfg = compose_cfg("job=info", "backend=echo", "size=qwen3_xl", *overrides, run_dir=tmp_path / "info")
    run(cfg)
    recommended = json.loads((tmp_path / "info" / "info.json").read_text())["recommended"]
    auto = compose_cfg("size=auto", "backend=echo", *overrides)
    try:
        resolve_auto(auto)
    except ConfigError:  # nothing fits: info recommends nothing either
        assert recommended["huggingface"]["generate"] is None
    else:
        assert recommended["huggingface"]["generate"]["size"] == auto.size.name
    auto = compose_cfg("size=auto", "job=embed", *overrides)  # offline, nothing cached: the bundled embedder
    resolve_auto(auto)
    assert recommended["huggingface"]["embed"]["size"] == auto.size.name


def test_info_with_quantization_auto_plans_as_size_auto_does() -> None:
    """resolve_auto turns quantization=auto into a value; info still plans with auto's modes afterwards."""
    report = machine("cuda", 24)
    cfg = compose_cfg("size=qwen3_small", "backend=echo", "hardware=gpu_high")
    resolve_auto(cfg, report=report)
    assert cfg.hardware.quantization == "none" and cfg.hardware.selected_by
    auto = compose_cfg("size=auto", "backend=echo", "hardware=gpu_high")
    resolve_auto(auto, report=report)
    picks = recommendations(to_spec(HardwareSpec, cfg.hardware), report)
    assert picks["huggingface"]["generate"]["size"] == auto.size.name
    assert picks["huggingface"]["generate"]["mode"] in ("8bit", "4bit")  # quantized, as auto may


def test_size_auto_for_embeddings_falls_back_to_the_bundled_embedder(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    cfg, decided = resolved("size=auto", "job=embed", report=machine("cpu", 23), cached=lambda spec: False)
    assert cfg.size.name == decided["size"] == "minilm"  # nothing cached: the bundled one, not a refusal
    assert cfg.size.selected_by.startswith("minilm: bundled (needs no download)") and cfg.backend.size.name == "minilm"
    cached = resolved("size=auto", "job=embed", report=machine("cpu", 23), cached=lambda s: s.name.endswith("0_6b"))
    assert cached[0].size.name == "qwen3_embedding_0_6b"  # a cached catalog embedder still wins
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    assert resolved("size=auto", "job=embed", report=machine("cpu", 0.9))[0].size.name == "minilm"  # none fits
    online = resolved("size=auto", "job=embed", report=machine("cpu", 23))[0]
    assert online.size.name.startswith("qwen3_embedding_")  # online, the largest that fits, as before


# ----------------------------------------------------------------- speed on a CPU
def test_speed_estimates_follow_the_machine_and_the_model() -> None:
    xl, small, embed4b = load_size("qwen3_xl"), load_size("qwen3_small"), load_size("qwen3_embedding_4b")
    one = tokens_per_s(xl, "float32", batch=1, speed=TWO_CORES)
    assert one < 1  # 32.8 GB of weights read per token at 14 GB/s, at the efficiency adam reaches
    assert tokens_per_s(xl, "float32", batch=32, speed=TWO_CORES) > one  # a batch shares the weight reads
    assert tokens_per_s(small, "float32", batch=32, speed=TWO_CORES) > 10 * one
    assert tokens_per_s(xl, "4bit", batch=1, speed=TWO_CORES) > 4 * one  # fewer bytes a step
    double = CpuSpeed(120.0, 28.0, "test")
    assert tokens_per_s(embed4b, "float32", batch=32, speed=double) == pytest.approx(
        2 * tokens_per_s(embed4b, "float32", batch=32, speed=TWO_CORES)
    )


def test_size_auto_on_two_cores_skips_models_too_slow_to_generate_with() -> None:
    """Memory alone picked an 8B model on a 2-core machine with enough RAM: well under a token a second."""
    fast, _ = resolved("size=auto", report=machine("cpu", 60), cached=lambda spec: True)
    assert fast.size.name == "qwen3_xl"  # memory decides on a fast CPU
    cfg, _ = resolved("size=auto", report=machine("cpu", 60, TWO_CORES), cached=lambda spec: True)
    assert cfg.size.name == "qwen3_small", cfg.size.selected_by
    why = cfg.size.selected_by
    assert "estimated" in why and "tokens over 8 sequences a second on this CPU (60 GFLOP/s, 14 GB/s" in why
    assert "would fit but is estimated" in why and "below hardware.min_tokens_per_s=5" in why
    slower_ok, _ = resolved(
        "size=auto", "hardware.min_tokens_per_s=0", report=machine("cpu", 60, TWO_CORES), cached=lambda s: True
    )
    assert slower_ok.size.name == "qwen3_xl"  # 0: memory only, as before
    echo, _ = resolved("size=auto", "backend=echo", report=machine("cpu", 60, TWO_CORES))
    assert echo.size.name == "qwen3_xl"  # a backend that does not compute here is not held to this CPU's speed


def test_size_auto_on_two_cores_embeds_with_the_bundled_embedder() -> None:
    """Memory alone picked Qwen3-Embedding-4B in float32 for an embedding job on 2 cores."""
    cfg, _ = resolved("size=auto", "job=embed", report=machine("cpu", 23, TWO_CORES), cached=lambda spec: True)
    assert cfg.size.name == "minilm", cfg.size.selected_by
    assert "no embed model that fits reaches hardware.min_embed_tokens_per_s=100" in cfg.size.selected_by
    fast, _ = resolved("size=auto", "job=embed", report=machine("cpu", 23), cached=lambda spec: True)
    assert fast.size.name == "qwen3_embedding_4b"
    given, _ = resolved(  # the machine's speed from the config, not measured
        "size=auto",
        "job=embed",
        "hardware.cpu_gflops=3000",
        "hardware.memory_bandwidth_gbs=100",
        report=machine("cpu", 23, TWO_CORES),
        cached=lambda spec: True,
    )
    assert given.size.name == "qwen3_embedding_4b"
    assert "hardware.cpu_gflops, hardware.memory_bandwidth_gbs" in given.size.selected_by


def test_info_starts_with_a_verdict_and_labels_every_batch(fake_machine: None, tmp_path: Path, capsys) -> None:
    run(compose_cfg("job=info", "size=qwen3_xl", run_dir=tmp_path / "xl"))
    text = capsys.readouterr().out
    first = text.splitlines()[0]
    assert first.startswith("DOES NOT FIT: qwen3_xl (Qwen/Qwen3-8B, 8.2B parameters), backend=huggingface on cpu")
    assert "52.1 GiB as float32 at job.batch_size=32 x 2,048 tokens; 18.4 GiB usable here (23.0 GiB" in first
    assert "It fits with hardware.quantization=4bit: 14.5 GiB at the same batch." in text
    assert "It fits with backend=ollama, as 4bit" in text
    assert "job.format=json prints it" in text.splitlines()[-1]
    doc = json.loads((tmp_path / "xl" / "info.json").read_text())
    assert doc["verdict"][0] == first and next(iter(doc)) == "verdict"
    configured = [r for r in doc["fits"] if r["configured"]]
    assert [(r["backend"], r["mode"], r["fits"], r["batch"]) for r in configured] == [
        ("huggingface", "float32", False, 32)
    ]
    assert all(t["batch"] == 1 for t in doc["tiers"])  # the tier table plans one sequence ...
    assert {p["batch"] for kinds in doc["recommended"].values() for p in kinds.values() if p} == {32}  # ... these 32
    assert "each pick planned for one sequence, batch 1" in text and "at batch 32 x 2,048" in text

    run(compose_cfg("job=info", "size=qwen3_small", "hardware.memory_gb=40", run_dir=tmp_path / "small"))
    first = capsys.readouterr().out.splitlines()[0]
    assert first.startswith("FITS: qwen3_small") and "32.0 GiB usable here (40.0 GiB hardware.memory_gb=40" in first
