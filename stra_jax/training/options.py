"""The keys of a registered entry chosen by a config mapping.

A schedule or optimiser entry is a function whose keyword-only parameters are
its own config keys (those without a default are required)::

    @SCHEDULES.register("step")
    def step(context, *, decay_every: int, gamma: float) -> Schedule: ...

``config.train.schedule = dict(name="step", decay_every=20, gamma=0.2)`` then
calls it with ``decay_every=20, gamma=0.2``. :func:`split_config` reads such a
mapping and :func:`check_keys` refuses a key the entry does not take, naming
the entry that does take it when there is one (``b2`` under ``sgd``: a key of
``adam``).
"""
from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from stra_jax.registry import Registry


def own_keys(fn: Callable[..., Any]) -> tuple[list[str], list[str]]:
    """``(required, optional)`` keyword-only parameter names of ``fn``."""
    params = [p for p in inspect.signature(fn).parameters.values() if p.kind is p.KEYWORD_ONLY]
    return ([p.name for p in params if p.default is p.empty],
            [p.name for p in params if p.default is not p.empty])


def split_config(config: Any, registry: Registry, key: str) -> tuple[str, dict[str, Any]]:
    """``dict(name=..., **options)`` (a dict or ConfigDict) -> ``(name, options)``.

    ``key`` is the config key that holds the mapping (``"train.schedule"``).
    A missing mapping, a bare string or a mapping without ``name`` fails with
    the expected form and the registered names.
    """
    known = registry.names()
    if config is None:
        raise ValueError(f"{key} is missing: expected dict(name=..., <its keys>), name one of {known}")
    if isinstance(config, str):
        raise ValueError(f"{key}={config!r}: {key} is a mapping now, dict(name={config!r}, <its keys>)")
    if not isinstance(config, Mapping) and not hasattr(config, "to_dict"):
        raise ValueError(f"{key}={config!r}: expected dict(name=..., <its keys>), name one of {known}")
    options = dict(config.to_dict() if hasattr(config, "to_dict") else config)
    if "name" not in options:
        raise ValueError(f"{key} has no name: expected dict(name=..., <its keys>), name one of {known}")
    name = options.pop("name")
    registry.get(name, key=f"{key}.name")  # an unknown name lists the known ones
    return name, options


def check_keys(registry: Registry, name: str, options: Mapping[str, Any], key: str | None,
               common: Iterable[str] = ()) -> None:
    """Refuse an option the entry ``name`` does not take, and a missing required one.

    ``common``: keys every entry of the registry accepts (a schedule's warmup).
    A key that another entry takes names that entry; any other unknown key
    lists ``name``'s valid keys.
    """
    where = f"{key}." if key else f"{registry.kind} {name!r} option "
    required, optional = own_keys(registry.get(name))
    valid = sorted({*required, *optional, *common})
    for option in options:
        if option in valid:
            continue
        users = [other for other in registry.names()
                 if other != name and option in sum(own_keys(registry.get(other)), [])]
        if users:
            raise ValueError(f"{where}{option} is a key of {registry.kind} {' and '.join(map(repr, users))}, "
                             f"not of {name!r} (its keys: {valid})")
        raise ValueError(f"{where}{option}: unknown key of {registry.kind} {name!r}; its keys: {valid}")
    missing = [k for k in required if k not in options]
    if missing:
        raise ValueError(f"{where}{missing[0]} is required by {registry.kind} {name!r} (its keys: {valid})")

