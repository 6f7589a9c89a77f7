"""`python -m adam --help` in one config load, however many sizes and launchers conf/ grows.

Hydra's help fills every placeholder of its template before it looks at the template: it lists the config groups
for $APP_CONFIG_GROUPS and $HYDRA_CONFIG_GROUPS whether the template shows them or not, and each group it lists
deep-copies the whole config repository (every schema in the ConfigStore). With the catalog's sizes and the
launcher presets that was about 80 copies, 2 of the 2.5 seconds --help took. adam's template
(conf/hydra/help/adam.yaml) lists the groups from the conf/ folders instead (settings/catalog.py, ${adam_groups:}), so
the listing is deferred here until a template asks for it: --hydra-help, whose template does, still gets it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


class _Deferred:
    """A placeholder value that is computed when string.Template substitutes it, and only then."""

    def __init__(self, make: Callable[[], str]) -> None:
        self._make = make

    def __str__(self) -> str:
        return self._make()


def defer_group_listing() -> None:
    """Make Hydra's config-group listing lazy (idempotent); hydra-core is pinned to 1.3, where it is checked."""
    from hydra._internal.hydra import Hydra

    original = Hydra.format_config_groups
    if getattr(original, "adam_deferred", False):
        return

    def format_config_groups(self: Hydra, predicate: Callable[[str], bool], compact: bool = True) -> Any:
        return _Deferred(lambda: original(self, predicate, compact))

    format_config_groups.adam_deferred = True  # type: ignore[attr-defined]
    Hydra.format_config_groups = format_config_groups  # type: ignore[method-assign]
