"""What adam's conf/ offers: the config groups and the options in each, read from the YAML files shipped with it."""

from __future__ import annotations

from importlib import resources

CONFIG_MODULE = "adam.conf"  # where Hydra finds conf/ after any install (see pyproject.toml)
GROUPS = ("backend", "size", "domain", "hardware", "job")


def options(group: str) -> list[str]:
    """The choices of a config group, from the YAML files shipped in conf/."""
    if group not in GROUPS:
        raise ValueError(f"unknown config group {group!r}; groups: {', '.join(GROUPS)}")
    folder = resources.files(CONFIG_MODULE).joinpath(group)
    return sorted(p.name[: -len(".yaml")] for p in folder.iterdir() if p.name.endswith(".yaml"))


def backends() -> list[str]:
    """Backend names usable as backend=NAME."""
    return options("backend")


def sizes() -> list[str]:
    """Size names usable as size=NAME."""
    return options("size")


def listing() -> str:
    """``group: option, ...`` lines, as --help shows them."""
    return "\n".join(f"{group}: {', '.join(options(group))}" for group in GROUPS)
