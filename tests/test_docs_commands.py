"""Every ``python -m adam ...`` command in the README and the docs composes with Hydra (nothing runs).

Commands are taken from fenced code blocks (a line at a time, ``\\`` continuations joined) and from
inline code spans (which may wrap across lines). Placeholders are filled (``<same overrides>`` is
dropped, any other ``<...>`` or ``$(...)`` becomes a plain value), CLI flags that only print
(``--cfg``, ``--help``) are dropped, and a sweep (``-m a=x,y``) composes each combination. A command
that needs a Hydra plugin that is not installed is skipped with the reason.
"""

from __future__ import annotations

import itertools
import re
import shlex
import subprocess
from dataclasses import dataclass

import pytest
from helpers import REPO, installed, ray_python
from hydra import compose, initialize_config_dir, initialize_config_module
from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import OmegaConf

import adam.backends.schemas  # noqa: F401  (registers the schemas)
from adam.planning import tiers

DOCS = [REPO / "README.md", REPO / "jobs" / "scheduled" / "README.md", *sorted((REPO / "docs").glob("*.md"))]
COMMAND = "python -m adam"
PRINT_ONLY = {"--help", "-h", "--hydra-help", "--resolve", "--info", "-i"}
WITH_VALUE = {"--cfg", "-c", "--package", "-p"}
SHELL_STOP = {"|", "||", "&&", ";", ">", ">>", "2>", "2>&1", ">/dev/null", "&"}
# Hydra plugins a launcher or sweeper choice needs: the group option -> the module the plugin installs
RAY_LAUNCHER = "hydra_plugins.hydra_ray_launcher"  # lives in its own venv, .venv-ray (tests/helpers.py)
PLUGINS = {
    "joblib": "hydra_plugins.hydra_joblib_launcher",
    "submitit_local": "hydra_plugins.hydra_submitit_launcher",
    "submitit_slurm": "hydra_plugins.hydra_submitit_launcher",
    "ray": RAY_LAUNCHER,
    "ray_aws": RAY_LAUNCHER,
    "adam_joblib": "hydra_plugins.hydra_joblib_launcher",  # adam's presets (conf/hydra/launcher/) extend them
    "adam_slurm": "hydra_plugins.hydra_submitit_launcher",
    "adam_ray": RAY_LAUNCHER,
    "rq": "hydra_plugins.hydra_rq_launcher",
    "optuna": "hydra_plugins.hydra_optuna_sweeper",
    "ax": "hydra_plugins.hydra_ax_sweeper",
    "nevergrad": "hydra_plugins.hydra_nevergrad_sweeper",
}


@dataclass(frozen=True)
class DocCommand:
    """One command as the docs write it, and where."""

    where: str  # file:line
    text: str  # everything after "python -m adam"


def _inline_spans(text: str) -> list[tuple[int, str]]:
    """(line number, code) of every inline code span outside fenced blocks; spans may wrap lines."""
    out = []
    outside = re.sub(r"^```.*?^```", lambda m: "\n" * m.group(0).count("\n"), text, flags=re.S | re.M)
    for match in re.finditer(r"`([^`]+)`", outside):
        out.append((outside.count("\n", 0, match.start()) + 1, " ".join(match.group(1).split())))
    return out


def _fenced_lines(text: str) -> list[tuple[int, str]]:
    """(line number, line) of the lines inside fenced code blocks, ``\\`` continuations joined."""
    out, fenced, pending, start = [], False, "", 0
    for number, line in enumerate(text.splitlines(), 1):
        if line.lstrip().startswith("```"):
            fenced = not fenced
            continue
        if not fenced:
            continue
        if not pending:
            start = number
        if line.rstrip().endswith("\\"):
            pending += line.rstrip()[:-1] + " "
            continue
        out.append((start, pending + line))
        pending = ""
    return out


def doc_commands() -> list[DocCommand]:
    """Every python -m adam command in the docs."""
    found = []
    for path in DOCS:
        text = path.read_text(encoding="utf-8")
        rel = path.relative_to(REPO)
        for number, code in _fenced_lines(text) + _inline_spans(text):
            code = code.replace("\\|", "|")
            at = code.find(COMMAND)
            if at < 0 or not re.match(rf"{re.escape(COMMAND)}(\s|$)", code[at:]):
                continue
            found.append(DocCommand(f"{rel}:{number}", code[at + len(COMMAND) :]))
    return found


def _fill(text: str) -> str:
    """The command with its placeholders filled and its shell comment cut off."""
    text = text.replace("<same overrides>", "").replace("...", " ")
    text = re.sub(r"\$\([^)]*\)", "x", text)
    text = re.sub(r"<[^<>]+>", "x", text)
    return text


@dataclass
class Parsed:
    """A command as compose() takes it."""

    overrides: list[str]
    config_dir: str | None = None
    config_name: str = "config"
    multirun: bool = False


def parse(text: str) -> Parsed:
    """Flags and overrides of one command line."""
    words = shlex.split(_fill(text), comments=True)
    parsed = Parsed([])
    it = iter(words)
    for word in it:
        if word in SHELL_STOP:
            break
        if word in PRINT_ONLY:
            continue
        if word in WITH_VALUE:
            next(it, None)
        elif word in ("-m", "--multirun"):
            parsed.multirun = True
        elif word in ("--config-dir", "-cd"):
            parsed.config_dir = next(it)
        elif word in ("--config-name", "-cn"):
            parsed.config_name = next(it)
        elif word.startswith("-"):
            raise AssertionError(f"unknown flag {word} in: {COMMAND}{text}")
        else:
            parsed.overrides.append(word)
    return parsed


def combinations(overrides: list[str]) -> list[list[str]]:
    """A sweep's jobs: every combination of the swept values (a plain run is one combination)."""
    choices = []
    for override in OverridesParser.create().parse_overrides(overrides):
        key = override.get_key_element()
        if override.is_sweep_override():
            choices.append([f"{key}={value}" for value in override.sweep_string_iterator()])
        else:
            choices.append([override.input_line])
    return [list(combo) for combo in itertools.product(*choices)]


def _missing_plugin(overrides: list[str]) -> tuple[str, str] | None:
    """The launcher or sweeper plugin a command needs that is not installed here, and why it needs it."""
    for override in overrides:
        key, _, value = override.partition("=")
        module = PLUGINS.get(value) if key.lstrip("+~") in ("hydra/launcher", "hydra/sweeper") else None
        if module and not installed(module):
            return module, f"needs the Hydra plugin {module.split('.')[-1].replace('_', '-')} for {key}={value}"
    return None


def compose_command(parsed: Parsed, overrides: list[str]) -> None:
    """Compose one job of the command; raises what Hydra raises."""
    if parsed.config_dir and parsed.config_name != "config":
        # a job config that extends adam's own (jobs/examples/*.yaml): adam's conf goes on the search path
        with initialize_config_dir(str((REPO / parsed.config_dir).resolve()), version_base="1.3"):
            overrides = [*overrides, "hydra.searchpath=[pkg://adam.conf]"]
            cfg = compose(parsed.config_name, overrides, return_hydra_config=True)
    else:
        extra = [f"hydra.searchpath=[file://{(REPO / parsed.config_dir).resolve()}]"] if parsed.config_dir else []
        with initialize_config_module("adam.conf", version_base="1.3"):
            cfg = compose(parsed.config_name, [*overrides, *extra], return_hydra_config=True)
    for group in ("backend", "size", "domain", "hardware", "job", "share"):
        OmegaConf.to_container(cfg[group], resolve=True, throw_on_missing=True)


COMMANDS = doc_commands()


def test_the_docs_have_commands() -> None:
    where = {c.where.split(":")[0] for c in COMMANDS}
    assert {"README.md", "docs/MODEL_MANAGEMENT.md"} <= where
    assert len(COMMANDS) > 40


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: c.where)
def test_every_documented_command_composes(command: DocCommand) -> None:
    parsed = parse(command.text)
    missing = _missing_plugin(parsed.overrides)
    if missing is not None and missing[0] == RAY_LAUNCHER and (python := ray_python()) is not None:
        _compose_with(python, command.text)
        return
    if missing is not None:
        pytest.skip(missing[1])
    jobs = combinations(parsed.overrides) if parsed.multirun else [parsed.overrides]
    for overrides in jobs:
        compose_command(parsed, overrides)


def _compose_with(python: str, text: str) -> None:
    """Compose every job of a documented command in another Python (one that has a plugin this one lacks)."""
    script = (
        "import sys; sys.path.insert(0, 'tests'); import test_docs_commands as t; p = t.parse(sys.argv[1]); "
        "[t.compose_command(p, o) for o in (t.combinations(p.overrides) if p.multirun else [p.overrides])]"
    )
    done = subprocess.run([python, "-c", script, text], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]


def test_a_wrong_command_would_fail() -> None:
    with pytest.raises(Exception, match="batchsize"):
        compose_command(parse(" job.batchsize=8"), parse(" job.batchsize=8").overrides)


@pytest.mark.parametrize(
    ("marker", "table"), [("catalog", tiers.catalog_table), ("tiers", tiers.markdown_table)], ids=["catalog", "tiers"]
)
def test_generated_tables_in_the_guide_match_the_code(marker: str, table) -> None:
    text = (REPO / "docs" / "MODEL_MANAGEMENT.md").read_text(encoding="utf-8")
    block = re.search(rf"<!-- {marker}:begin[^>]*-->\n(.*?)\n<!-- {marker}:end -->", text, re.S)
    assert block, f"docs/MODEL_MANAGEMENT.md has no {marker} markers"
    assert block.group(1) == table(), (
        f"regenerate with: python -c 'from adam import tiers; print(tiers.{table.__name__}())'"
    )


def test_the_readme_links_the_guide() -> None:
    assert "(docs/MODEL_MANAGEMENT.md)" in (REPO / "README.md").read_text(encoding="utf-8")


def _slug(heading: str) -> str:
    """The anchor GitHub gives a heading."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower().replace("`", ""))
    return text.replace(" ", "-")


def test_every_link_between_the_docs_resolves() -> None:
    """The README is the way in: each page it or another page links to, and each heading, must exist."""
    broken = []
    for path in DOCS:
        text = re.sub(r"^```.*?^```", "", path.read_text(encoding="utf-8"), flags=re.S | re.M)
        for target in re.findall(r"\]\(([^)\s]+)\)", text):
            if re.match(r"[a-z]+:", target):  # http:, https:, mailto:
                continue
            file_part, _, anchor = target.partition("#")
            dest = (path.parent / file_part).resolve() if file_part else path
            if not dest.exists():
                broken.append(f"{path.relative_to(REPO)}: {target}")
            elif anchor and dest.suffix == ".md":
                headings = re.findall(r"^#+ (.*)$", dest.read_text(encoding="utf-8"), flags=re.M)
                if anchor not in {_slug(h) for h in headings}:
                    broken.append(f"{path.relative_to(REPO)}: {target} (no such heading)")
    assert broken == []


def test_the_readme_gets_a_newcomer_to_results_and_links_the_reference() -> None:
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    first_block = re.search(r"```bash\n(.*?)```", readme, re.S).group(1)
    assert [line.split()[:2] for line in first_block.splitlines()] == [["make", "run"], ["make", "test"]]
    assert readme.splitlines()[:3] == ["# adam", "", "```bash"]  # the commands come first
    assert len(readme.splitlines()) < 200  # the reference lives in docs/
    for page in ("install", "configuration", "jobs", "exit-statuses", "backends", "server", "scale-out", "benchmarks"):
        assert f"(docs/{page}.md)" in readme, page
