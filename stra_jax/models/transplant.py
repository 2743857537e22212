"""Initialise one architecture from a trained run of another of the same family.

The paper starts StRA-ResNet-50 from an ImageNet ResNet-50: the trunk's tensors
carry over, the new StRA modules and the ReID head start at their random
initialisation. :func:`transplant` does that for Flax variables: every tensor
whose full name (collection + module path) exists in the source with the same
shape is copied, the rest keep the target's initial values, and a
:class:`TransplantReport` says which is which. The same architecture is the case
where everything loads.

:func:`resolve_init_source` tells what ``config.init_from`` names: a training
workdir (its ``model_best/``, else ``model_last/``), a model directory, or a
PyTorch state_dict file (read by ``stra_jax.convert``, a higher layer).

    source = resolve_init_source("runs/imagenet_resnet50")
    variables, report = transplant(init, load_variables(source.path),
                                   target_arch="stra_resnet50", source_arch="resnet50")
    print(report.describe(str(source)))
"""
from __future__ import annotations

import dataclasses
import os
import re
from collections import Counter
from typing import Any, Literal

import jax
import jax.numpy as jnp
from etils import epath

from stra_jax.models.io import MODEL_BEST, MODEL_LAST, resolve_model_dir
from stra_jax.utils import as_path

# The collections a model directory holds (``io.save_model``); others (none today) are left alone.
COLLECTIONS = ("params", "batch_stats")
# What ``stra_jax.convert.read_state_dict`` reads (torch.save files and safetensors).
STATE_DICT_SUFFIXES = (".pth", ".pth.tar", ".pt", ".tar", ".bin", ".safetensors")
EXPECTED = (f"a training workdir (with {MODEL_BEST}/ or {MODEL_LAST}/), a model directory "
            "(model.json + variables/), or a PyTorch state_dict (.pth/.pt/.bin/.safetensors)")


@dataclasses.dataclass(frozen=True)
class InitSource:
    """What an ``init_from`` path names.

    ``kind``: "workdir" | "model_dir" | "state_dict"; ``path``: the model
    directory to read (a workdir's chosen one) or the state_dict file;
    ``picked``: for a workdir, which model directory (``model_best`` or
    ``model_last``), else None; ``given``: the path as the user wrote it (for
    messages)."""

    kind: Literal["workdir", "model_dir", "state_dict"]
    path: epath.Path
    given: str
    picked: str | None = None

    def __str__(self) -> str:
        return f"{self.given} ({self.picked}/ of the workdir)" if self.picked else self.given


def resolve_init_source(path: str | os.PathLike) -> InitSource:
    """Classify ``path`` (local or ``gs://``); anything else fails naming it and
    listing what is accepted."""
    given = os.fspath(path)
    resolved = as_path(given)
    if resolved.is_dir():
        try:
            model_dir, _ = resolve_model_dir(resolved)
        except FileNotFoundError:
            raise ValueError(f"init_from {given}: a directory without model.json, {MODEL_BEST}/ or "
                             f"{MODEL_LAST}/; expected {EXPECTED}") from None
        if model_dir == resolved:
            return InitSource("model_dir", model_dir, given)
        return InitSource("workdir", model_dir, given, picked=model_dir.name)
    if resolved.is_file():
        if resolved.name.endswith(STATE_DICT_SUFFIXES):
            return InitSource("state_dict", resolved, given)
        raise ValueError(f"init_from {given}: a file of unknown kind; expected {EXPECTED}")
    raise ValueError(f"init_from {given}: no such file or directory; expected {EXPECTED}")


@dataclasses.dataclass
class TransplantReport:
    """What :func:`transplant` did. Names are ``collection/module/.../leaf``.

    ``loaded``: copied from the source; ``new``: absent from the source, left at
    initialisation; ``conflicting``: ``(name, target shape, source shape)``, in
    both with other shapes, left at initialisation; ``unused``: source tensors
    the target lacks."""

    source_arch: str
    target_arch: str
    loaded: list[str] = dataclasses.field(default_factory=list)
    new: list[str] = dataclasses.field(default_factory=list)
    conflicting: list[tuple[str, tuple[int, ...], tuple[int, ...]]] = dataclasses.field(default_factory=list)
    unused: list[str] = dataclasses.field(default_factory=list)

    def summary(self, source: str = "") -> str:
        """The one-line counts: ``init_from <source> (<arch> -> <arch>): N tensors loaded, ...``."""
        head = f"init_from {source}" if source else "transplant"
        return (f"{head} ({self.source_arch} -> {self.target_arch}): {len(self.loaded)} tensors loaded, "
                f"{len(self.new)} new (left at initialisation), {len(self.conflicting)} with other shapes "
                f"(left at initialisation), {len(self.unused)} in the source not used")

    def describe(self, source: str = "", max_groups: int = 30, max_conflicts: int = 10,
                 max_unused_groups: int = 10) -> str:
        """One block: :meth:`summary`, then the new tensors counted per module,
        the conflicting ones with both shapes, the unused ones per module."""
        lines = [self.summary(source)]
        if self.new:
            lines.append("  new (left at initialisation), by module:")
            lines += _grouped(self.new, max_groups)
        if self.conflicting:
            lines.append("  other shapes (left at initialisation): name: target shape vs source shape")
            lines += [f"    {n}: {t} vs {s}" for n, t, s in self.conflicting[:max_conflicts]]
            if len(self.conflicting) > max_conflicts:
                lines.append(f"    ... and {len(self.conflicting) - max_conflicts} more")
        if self.unused:
            lines.append("  in the source, not used, by module:")
            lines += _grouped(self.unused, max_unused_groups)
        return "\n".join(lines)


def module_group(name: str) -> str:
    """The module a tensor belongs to, two module names deep without the
    collection: ``params/layer4_0/stra/mode/gate_bn1/scale`` -> ``layer4_0/stra``,
    ``params/embed_conv/kernel`` -> ``embed_conv``. PyTorch names (dots) count
    block indices as part of the block: ``layer4.0.stra.local.value_conv.weight``
    -> ``layer4.0.stra``."""
    sep = "/" if "/" in name else "."
    parts = name.split(sep)
    if sep == "/" and parts[0] in COLLECTIONS:
        parts = parts[1:]
    modules, kept = parts[:-1] or parts, []
    named = 0
    for part in modules:
        kept.append(part)
        named += not part.isdigit()
        if named == 2:
            break
    return sep.join(kept)


def _grouped(names: list[str], limit: int) -> list[str]:
    """``    group: N tensors`` per module group (sorted by name, block numbers as
    numbers), at most ``limit``."""
    counts = Counter(module_group(n) for n in names)
    groups = sorted(counts, key=lambda g: [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", g)])
    lines = [f"    {g}: {counts[g]} tensor{'s' if counts[g] != 1 else ''}" for g in groups[:limit]]
    if len(counts) > limit:
        lines.append(f"    ... and {len(counts) - limit} more groups")
    return lines


def _key_name(key: Any) -> str:
    return str(getattr(key, "key", getattr(key, "name", getattr(key, "idx", key))))


def flat_variables(variables: dict[str, Any]) -> dict[str, Any]:
    """``{"params/layer1_0/conv1/kernel": leaf, ...}`` over :data:`COLLECTIONS`."""
    tree = {c: variables[c] for c in COLLECTIONS if c in variables}
    return {"/".join(_key_name(k) for k in path): leaf
            for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]}


def transplant(target: dict[str, Any], source: dict[str, Any], *, target_arch: str,
               source_arch: str) -> tuple[dict[str, Any], TransplantReport]:
    """``target`` (e.g. a fresh ``init_variables``) with every tensor of
    ``source`` that has the same name and shape copied in (cast to the target's
    dtype); the rest of ``target`` is returned unchanged (same objects).

    Raises ValueError, naming both architectures, when not one tensor matches
    (no shared name, or every shared name with another shape).
    """
    src = flat_variables(source)
    report = TransplantReport(source_arch=source_arch, target_arch=target_arch)
    seen: set[str] = set()

    def fill(path, leaf):
        name = "/".join(_key_name(k) for k in path)
        if name.split("/")[0] not in COLLECTIONS:
            return leaf
        seen.add(name)
        if name not in src:
            report.new.append(name)
            return leaf
        target_shape, source_shape = tuple(leaf.shape), tuple(src[name].shape)
        if target_shape != source_shape:
            report.conflicting.append((name, target_shape, source_shape))
            return leaf
        report.loaded.append(name)
        return jnp.asarray(src[name], dtype=leaf.dtype)

    out = jax.tree_util.tree_map_with_path(fill, dict(target))
    report.unused = [n for n in src if n not in seen]
    if not report.loaded:
        examples = "".join(f"\n  {n}: {t} vs {s}" for n, t, s in report.conflicting[:5])
        raise ValueError(
            f"cannot initialise {target_arch} from {source_arch}: no tensor has the same name and shape "
            f"({len(seen)} in {target_arch}, {len(src)} in {source_arch}, {len(report.conflicting)} shared "
            f"names all with other shapes); expected a network of the same family"
            + (f"; conflicts (name: target shape vs source shape):{examples}" if examples else ""))
    return out, report
