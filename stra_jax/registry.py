"""One registry class for every extension point (fast-reid's ``Registry``).

Each seam of the package owns one :class:`Registry`, declared beside the code
it selects: models (``stra_jax.models.registry.MODELS``), tasks
(``stra_jax.tasks.TASKS``), evaluators (``stra_jax.evaluation.evaluators.EVALUATORS``),
loss terms (``stra_jax.losses.LOSSES``), samplers (``stra_jax.data.samplers.SAMPLERS``),
schedules and optimisers (``stra_jax.training.schedules.SCHEDULES``,
``stra_jax.training.optim.OPTIMIZERS``), dataset readers, TFDS builders,
PyTorch layouts and heads. An entry is registered beside its code::

    @LOSSES.register("triplet")
    def triplet(options, context): ...

or, for code that must not be imported until it is used, as a lazy
``"package.module:attribute"`` string::

    LOSSES.register("arcface", "stra_jax.losses.margin:arcface_term")

An unknown name fails with one message that lists the known ones.
"""
from __future__ import annotations

import importlib
from typing import Any, Callable, Generic, Iterator, TypeVar, overload

from stra_jax.utils import ConfigError

T = TypeVar("T")


class UnknownNameError(ConfigError):
    """A name that is not in a registry (a :class:`ConfigError`: bad configuration)."""


class Registry(Generic[T]):
    """Names -> objects of one kind, filled by ``register`` beside the code.

    Args:
        kind: what an entry is, for messages ("loss term", "model", "sampler").
        plural: its plural (default ``kind + "s"``).
    """

    def __init__(self, kind: str, plural: str | None = None) -> None:
        self.kind = kind
        self.plural = plural or f"{kind}s"
        self._entries: dict[str, T | str] = {}

    @overload
    def register(self, name: str | None = None, obj: None = None, *,
                 overwrite: bool = False) -> Callable[[T], T]: ...

    @overload
    def register(self, name: str, obj: T | str, *, overwrite: bool = False) -> T | str: ...

    def register(self, name: str | None = None, obj: Any = None, *, overwrite: bool = False) -> Any:
        """Register ``obj`` under ``name`` (default: its ``__name__``).

        Without ``obj`` this is a decorator: ``@REG.register("name")``. ``obj``
        may be a ``"module:attribute"`` string, imported on first :meth:`get`.
        Registering a taken name fails unless ``overwrite=True``.
        """
        if obj is None:
            def decorator(target: T) -> T:
                self._add(name or getattr(target, "__name__"), target, overwrite)
                return target

            return decorator
        self._add(name or getattr(obj, "__name__"), obj, overwrite)
        return obj

    def _add(self, name: str, obj: Any, overwrite: bool) -> None:
        if not isinstance(name, str) or not name:
            raise ValueError(f"{self.kind} names are non-empty strings, got {name!r}")
        if isinstance(obj, str) and obj.count(":") != 1:
            raise ValueError(f"{self.kind} {name!r}: a lazy entry is 'package.module:attribute', got {obj!r}")
        if name in self._entries and not overwrite:
            raise ValueError(f"{self.kind} {name!r} is already registered (pass overwrite=True to replace it)")
        self._entries[name] = obj

    def unregister(self, name: str) -> None:
        """Remove ``name`` (tests that register temporary entries)."""
        self._entries.pop(name, None)

    def names(self) -> list[str]:
        """The registered names, sorted."""
        return sorted(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self._entries)

    def unknown(self, name: Any, key: str | None = None) -> UnknownNameError:
        """The error for a name that is not registered. With ``key`` (the config
        key that held it): ``key='x': unknown <kind>; known <kinds>: [...]``;
        without: ``unknown <kind> 'x': known <kinds> are a, b``."""
        if key is not None:
            return UnknownNameError(f"{key}={name!r}: unknown {self.kind}; known {self.plural}: {self.names()}")
        return UnknownNameError(f"unknown {self.kind} {name!r}: known {self.plural} are {', '.join(self.names())}")

    def get(self, name: str, key: str | None = None) -> T:
        """The object registered as ``name`` (a lazy entry is imported now).
        ``key``: the config key that named it, for the error message."""
        if name not in self._entries:
            raise self.unknown(name, key)
        obj = self._entries[name]
        if isinstance(obj, str):
            module, attr = obj.split(":")
            obj = getattr(importlib.import_module(module), attr)
            self._entries[name] = obj
        return obj  # type: ignore[return-value]

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}: {', '.join(self.names())})"
