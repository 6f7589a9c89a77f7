"""backend.weight_type on a CPU: auto against the demo's shipped Q4_1 and against Q4_0 (repacked kernels, a second
4-bit rounding), llama.cpp's own llama-batched-bench, and a 0.5B Qwen3-shaped random model on both backends.

- Demo: adam's llamacpp job with ``backend.weight_type=auto`` (Q8_0 for this Q4_1 file), ``as_is`` (Q4_1) and
  ``Q4_0``, the same prompts, greedy, ``n_seq`` sequences, alternating runs, every answer ``max_tokens`` long
  (``job.ignore_eos``), so each side generates the same tokens; then at one sequence. The answers of each type
  and of transformers' float32 (the HF backend on the dequantized demo) side by side: what each costs in quality.
- llama.cpp itself: ``llama-batched-bench`` built from the llama-cpp-python sdist's vendored llama.cpp (cached
  under ~/.cache/adam/llama-bench; ADAM_BENCH_BUILD_LLAMA=0 skips building it), on the same Q4_0 file, threads
  and sequence count, against adam's job rate.
- A realistic size: Qwen3 with hidden size 1024, 28 layers and random weights (transformers ``from_config``,
  the tests' tiny tokenizer so no download), written as F16 GGUF by adam's writer, run as F16, Q8_0 and Q4_0
  by backend=llamacpp and in float32 by backend=huggingface. Speed does not depend on the weights' values.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

from bench.common import Section, Timing, compose, fresh_dir, interleave
from bench.generate import make_prompts, tiny_qwen3

MAX_TOKENS = 64
N_SEQ = 32
SYSTEM = "You are a helpful assistant. Answer clearly and concisely."
LLAMA_VERSION = "0.3.36"
BUILD_FLAGS = ["-DGGML_NATIVE=OFF", "-DGGML_AVX2=ON", "-DGGML_FMA=ON", "-DGGML_F16C=ON"]  # as the Makefile's wheel


def run(*, quick: bool = False) -> Section:
    """Weight types on the demo and on a 0.5B model; llama-batched-bench beside adam."""
    threads = int(os.environ.get("ADAM_BENCH_THREADS") or os.cpu_count() or 1)
    n, reps = (8, 3) if quick else (32, 3)  # a ratio is the median of three alternating runs, even when quick
    sec = Section(
        f"Weight types on a CPU (llamacpp, greedy, max_tokens={MAX_TOKENS}, {threads} threads)",
        f"python -m bench weights{' --quick' if quick else ''}  (adam: `python -m adam backend=llamacpp size=demo "
        f"backend.weight_type=auto|as_is backend.n_seq={N_SEQ} job.max_tokens={MAX_TOKENS}`)",
    )
    sec.lines.append(f"- Load while measuring: `{_uptime()}`")
    try:
        import llama_cpp  # noqa: F401
    except Exception as err:
        sec.lines.append(f"- skipped: llama-cpp-python is not importable ({type(err).__name__}: {err})")
        return sec
    work = fresh_dir("weights")
    try:
        rate = _demo(sec, work, n, reps, threads)
        _batched_bench(sec, rate, n, threads)
        try:
            _half_b(sec, work, 4 if quick else 16, 1 if quick else 3, threads)
        except Exception as err:  # the demo's numbers stand without it
            sec.lines.append(f"- 0.5B random Qwen3: failed ({type(err).__name__}: {err})")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return sec


def _uptime() -> str:
    try:
        return subprocess.run(["uptime"], capture_output=True, text=True, check=False).stdout.strip()
    except OSError:
        return "unknown"


def _write_prompts(work: Path, n: int) -> Path:
    source = work / "prompts.jsonl"
    source.write_text("".join(json.dumps({"id": f"p{i}", "prompt": p}) + "\n" for i, p in enumerate(make_prompts(n))))
    return source


def _variants(
    work: Path, tag: str, common: list[str], variants: dict[str, list[str]], n: int, reps: int
) -> tuple[dict[str, list[float]], dict[str, list[str]], dict[str, int]]:
    """(seconds, answers, generated tokens) by variant: each variant's job over ``n`` prompts, a warm-up and then
    ``reps`` runs alternating with the others'."""
    configs = {k: [compose([*common, *v], work / f"{tag}{k}{i}") for i in range(reps + 1)] for k, v in variants.items()}
    answers: dict[str, list[str]] = {}
    tokens: dict[str, int] = {}
    times = interleave({k: (lambda k=k: _job(configs[k], n, answers, tokens, k)) for k in variants}, reps=reps)
    return times, answers, tokens


def _job(configs: list[Any], n: int, answers: dict[str, list[str]], tokens: dict[str, int], key: str) -> None:
    from adam.run.runner import run as adam_run

    summary = adam_run(configs.pop(0))
    assert summary.stats.ok == n, summary
    rows = [json.loads(line) for line in (summary.run_dir / "results.jsonl").read_text().splitlines()]
    by_id = {r["id"]: r["text"] for r in rows}
    answers[key] = [by_id[f"p{i}"] for i in range(n)]
    tokens[key] = summary.stats.tokens
    shutil.rmtree(summary.run_dir)


def _demo(sec: Section, work: Path, n: int, reps: int, threads: int) -> float:
    """auto, as_is and Q4_0 on the demo, alternating; the answers against transformers' float32. adam's auto rate."""
    from adam.run.runner import build_backend

    base = ["size=demo", "hardware=cpu", f"hardware.threads={threads}", "job.temperature=0"]
    base += [f"job.max_tokens={MAX_TOKENS}", f"domain.system_prompt={SYSTEM}"]
    base += ["job.ignore_eos=true"]  # every answer MAX_TOKENS long: each side generates the same tokens
    common = [*base, f"job.input={_write_prompts(work, n)}", f"job.batch_size={n}"]
    llama = ["backend=llamacpp", "backend.n_ctx=512"]
    types = {"auto": "auto", "as_is": "as_is", "q4_0": "Q4_0"}
    variants = {k: [*llama, f"backend.n_seq={N_SEQ}", f"backend.weight_type={t}"] for k, t in types.items()}
    variants["float32"] = ["backend=huggingface"]  # transformers on the float32 copy of the same file
    plan = build_backend(compose([*common, *variants["auto"]], work / "plan")).weight_plan()
    times, answers, tokens = _variants(work, "", common, variants, n, reps)
    names = {"auto": f"weight_type=auto ({plan.weight_type})", "as_is": f"weight_type=as_is ({plan.file_type})"}
    names["q4_0"] = "weight_type=Q4_0"
    names["float32"] = f"backend=huggingface (float32 copy of the shipped file, batch {n})"
    for key, name in names.items():
        note = f"{n} prompts, {tokens[key]} tokens" + ("" if key == "float32" else f", n_seq {N_SEQ}")
        sec.timings.append(Timing(name, times[key], tokens[key], "tok", note=note))
    sec.ratio("demo: auto / shipped Q4_1 (job tokens/s)", names["auto"], names["as_is"], 1.3)
    sec.ratio("demo: llamacpp auto / huggingface (job tokens/s)", names["auto"], names["float32"], 1.5)
    sec.ratio("demo: Q4_0 / shipped Q4_1 (job tokens/s; what auto leaves for quality)", names["q4_0"], names["as_is"],
              None)  # fmt: skip
    sec.lines.append(f"- auto chose {plan.weight_type}: {plan.reason}.")
    sec.lines.append(_quality(answers))
    _one_sequence(sec, work, base, n, reps)
    return sec.get(names["auto"]).rate


def _one_sequence(sec: Section, work: Path, base: list[str], n: int, reps: int) -> None:
    """auto against the shipped file with one sequence at a time: a single chat's decoding speed."""
    few = min(n, 4)
    (work / "one").mkdir()
    common = [*base, f"job.input={_write_prompts(work / 'one', few)}", f"job.batch_size={few}"]
    variants = {k: ["backend=llamacpp", "backend.n_ctx=512", "backend.n_seq=1", "backend.interactive_slots=0",
                    f"backend.weight_type={k}"] for k in ("auto", "as_is")}  # fmt: skip
    times, _, tokens = _variants(work, "one-", common, variants, few, reps)
    for key in variants:
        sec.timings.append(Timing(f"weight_type={key}, one sequence", times[key], tokens[key], "tok",
                                  note=f"{few} prompts, {tokens[key]} tokens, n_seq 1"))  # fmt: skip
    sec.ratio("demo: auto / shipped Q4_1, one sequence (tokens/s)", "weight_type=auto, one sequence",
              "weight_type=as_is, one sequence", None)  # fmt: skip


def _quality(answers: dict[str, list[str]]) -> str:
    """How often greedy answers agree (all MAX_TOKENS long), and the first few side by side."""

    def agree(a: str, b: str) -> str:
        same = sum(x == y for x, y in zip(answers[a], answers[b], strict=True))
        prefix = [_common(x, y) for x, y in zip(answers[a], answers[b], strict=True)]
        return f"{a} = {b} on {same}/{len(prefix)} prompts (mean common prefix {sum(prefix) / len(prefix):.0f} chars)"

    pairs = (("auto", "as_is"), ("q4_0", "as_is"), ("as_is", "float32"), ("auto", "float32"), ("q4_0", "float32"))
    lines = [
        "- Quality (greedy answers, each its first "
        + str(MAX_TOKENS)
        + " tokens): "
        + "; ".join(agree(a, b) for a, b in pairs)
        + ".",
        "",
        "| prompt | Q4_1 (shipped) | auto | Q4_0 | float32 (transformers) |",
        "| --- | --- | --- | --- | --- |",
    ]
    for i, prompt in enumerate(make_prompts(4)):
        cells = [prompt[:50], *(answers[k][i][:90] for k in ("as_is", "auto", "q4_0", "float32"))]
        lines.append("| " + " | ".join(c.replace("\n", " ").replace("|", "/") for c in cells) + " |")
    return "\n".join(lines) + "\n"


def _common(a: str, b: str) -> int:
    """Characters two texts share from their start."""
    return next((i for i, (x, y) in enumerate(zip(a, b, strict=False)) if x != y), min(len(a), len(b)))


# ----------------------------------------------------------------- llama.cpp's own llama-batched-bench
def batched_bench_binary() -> tuple[Path | None, str]:
    """(llama-batched-bench, how it was found), built once from the sdist into adam's cache; (None, why not)."""
    from adam.paths import cache_root

    home = cache_root() / "llama-bench"
    binary = home / "build" / "bin" / "llama-batched-bench"
    if binary.is_file():
        return binary, f"cached at {binary}"
    if os.environ.get("ADAM_BENCH_BUILD_LLAMA") == "0":
        return None, "not built (ADAM_BENCH_BUILD_LLAMA=0)"
    if not (shutil.which("cmake") and shutil.which("ninja")):
        return None, "cmake and ninja are needed to build it"
    home.mkdir(parents=True, exist_ok=True)
    src = home / f"llama_cpp_python-{LLAMA_VERSION}"
    steps = []
    if not src.is_dir():
        pip = ["python", "-m", "pip", "download", "--no-deps", "--no-binary", ":all:", "-d", str(home)]
        steps.append([*pip, f"llama-cpp-python=={LLAMA_VERSION}"])
        steps.append(["tar", "xzf", str(home / f"llama_cpp_python-{LLAMA_VERSION}.tar.gz"), "-C", str(home)])
    cmake = ["cmake", "-S", str(src / "vendor" / "llama.cpp"), "-B", str(home / "build"), "-G", "Ninja"]
    steps.append([*cmake, "-DCMAKE_BUILD_TYPE=Release", "-DLLAMA_CURL=OFF", "-DLLAMA_BUILD_TESTS=OFF", *BUILD_FLAGS])
    steps.append(["cmake", "--build", str(home / "build"), "--target", "llama-batched-bench"])
    for step in steps:
        step = [sys.executable, *step[1:]] if step[0] == "python" else step
        proc = subprocess.run(step, capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            return None, f"building it failed at `{' '.join(step[:3])}`: {(proc.stderr or proc.stdout)[-200:]}"
    return (binary, "built now") if binary.is_file() else (None, "the build made no llama-batched-bench")


def _batched_bench(sec: Section, adam_rate: float, n: int, threads: int) -> None:
    """llama-batched-bench on the file auto runs, n_seq sequences of the prompts' mean length."""
    from adam.run.runner import build_backend

    binary, how = batched_bench_binary()
    if binary is None:
        sec.lines.append(f"- llama-batched-bench: skipped, {how}.")
        return
    backend = build_backend(compose(["backend=llamacpp", "size=demo", "hardware=cpu"], fresh_dir("bb")))
    plan = backend.weight_plan()
    gguf = str(plan.path if plan.path.is_file() else backend.source().path)
    npp = 64  # about the bench prompts' length with the system prompt and chat template
    cmd = [str(binary), "-m", gguf, "-c", str(N_SEQ * (npp + MAX_TOKENS)), "-b", "512", "-ub", "512"]
    cmd += ["-npp", str(npp), "-ntg", str(MAX_TOKENS), "-npl", str(N_SEQ), "-t", str(threads), "--output-format", "md"]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False, timeout=1800)
    rows = [r for r in proc.stdout.splitlines() if re.match(r"\|\s*\d+\s*\|", r)]
    if proc.returncode != 0 or not rows:
        sec.lines.append(f"- llama-batched-bench failed ({proc.returncode}): {proc.stderr[-300:]}")
        return
    cells = [c.strip() for c in rows[-1].strip("|").split("|")]  # PP TG B N_KV T_PP S_PP T_TG S_TG T S
    total = float(cells[8])
    rate = N_SEQ * MAX_TOKENS / total  # generated tokens over the whole run, prompts included, as adam's job rate
    sec.checks.append(("adam job / llama-batched-bench (generated tokens over all time)", adam_rate / rate, 0.9))
    sec.lines.append(
        f"- llama-batched-bench ({how}): {N_SEQ} sequences of {npp} prompt + {MAX_TOKENS} generated tokens on "
        f"{Path(gguf).name} in {total:.2f} s = {rate:.1f} generated tok/s (PP {cells[5]} tok/s, TG {cells[7]} "
        f"tok/s); adam's job reads {n} prompts of mixed length, so the comparison is close, not exact."
    )


# ----------------------------------------------------------------- a 0.5B Qwen3-shaped model with random weights
def half_b_model(home: Path) -> tuple[Path, Path]:
    """(HF directory, F16 GGUF) of the random Qwen3 (hidden 1024, 28 layers), made once under ``home``."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    from adam.sharing.gguf_export import export_gguf

    hf_dir, gguf = home / "hf", home / "qwen3-0.5b-random.F16.gguf"
    if gguf.is_file() and (hf_dir / "config.json").is_file():
        return hf_dir, gguf
    tiny = tiny_qwen3(home / "tiny")  # its tokenizer and chat template; the shapes are replaced
    config = AutoConfig.from_pretrained(tiny)
    config.update(
        dict(hidden_size=1024, num_hidden_layers=28, intermediate_size=3072, num_attention_heads=16)
        | dict(num_key_value_heads=8, head_dim=128, tie_word_embeddings=True, max_position_embeddings=4096)
    )
    config.layer_types = ["full_attention"] * config.num_hidden_layers
    config.max_window_layers = config.num_hidden_layers
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.save_pretrained(hf_dir)
    for f in tiny.iterdir():
        if f.name.startswith(("tokenizer", "special_tokens", "vocab", "merges", "chat_template")):
            shutil.copy(f, hf_dir / f.name)
    export_gguf(hf_dir, gguf, dtype="f16")
    return hf_dir, gguf


def _half_b(sec: Section, work: Path, n: int, reps: int, threads: int) -> None:
    from adam.paths import cache_root

    hf_dir, gguf = half_b_model(cache_root() / "bench" / "qwen3-0.5b-random")
    source = _write_prompts(work, n)
    max_tokens = 32
    common = ["size=local", "hardware=cpu", f"hardware.threads={threads}", f"job.input={source}", "job.temperature=0"]
    common += [f"job.max_tokens={max_tokens}", f"job.batch_size={n}", "size.context_length=4096"]
    llama = ["backend=llamacpp", f"size.path={gguf}", f"backend.n_seq={n}", "backend.n_ctx=512"]
    variants = {t: [*llama, f"backend.weight_type={t}"] for t in ("Q4_0", "Q8_0", "F16")}
    variants["huggingface float32"] = ["backend=huggingface", f"size.path={hf_dir}"]
    times, _, tokens = _variants(work, "half", common, variants, n, reps)
    for key in variants:
        name = f"0.5B random Qwen3: {key if key.startswith('hug') else 'llamacpp ' + key}"
        note = f"{n} prompts, {tokens[key]} tokens (max_tokens {max_tokens})"
        sec.timings.append(Timing(name, times[key], tokens[key], "tok", note=note))
    sec.lines.append(
        "- 0.5B: Qwen3 shapes (hidden 1024, 28 layers, MLP 3072, 16/8 heads of 128) with the tests' 384-token "
        "vocabulary, so about 0.44B parameters, all in the layers; random weights stop early at different points, "
        "so rates count each side's own generated tokens."
    )
