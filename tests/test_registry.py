"""The one ``Registry`` class, and that every registry of the package uses it."""
from __future__ import annotations

import pytest

from stra_jax.registry import Registry, UnknownNameError


def test_decorator_registers_under_the_name_or_the_object_name():
    reg: Registry = Registry("widget")

    @reg.register("first")
    def make_first():
        return 1

    @reg.register()
    def second():
        return 2

    assert reg.get("first") is make_first and reg.get("second") is second
    assert reg.names() == ["first", "second"] and list(reg) == ["first", "second"] and len(reg) == 2
    assert "first" in reg and "third" not in reg
    assert reg.register("third", abs) is abs and reg.get("third") is abs  # the call form
    reg.unregister("third")
    assert "third" not in reg


def test_lazy_entry_is_imported_on_first_get():
    reg: Registry = Registry("function")
    reg.register("join", "os.path:join")
    assert reg._entries["join"] == "os.path:join"  # nothing imported yet
    import os.path

    assert reg.get("join") is os.path.join
    assert reg._entries["join"] is os.path.join  # resolved once


def test_taken_name_fails_unless_overwrite():
    reg: Registry = Registry("widget")
    reg.register("a", min)
    with pytest.raises(ValueError, match=r"widget 'a' is already registered \(pass overwrite=True"):
        reg.register("a", max)
    reg.register("a", max, overwrite=True)
    assert reg.get("a") is max


def test_unknown_name_lists_the_known_ones_in_both_forms():
    reg: Registry = Registry("loss term")
    reg.register("ce", min)
    reg.register("triplet", max)
    with pytest.raises(UnknownNameError, match=r"^train\.losses='arc': unknown loss term; "
                                               r"known loss terms: \['ce', 'triplet'\]$"):
        reg.get("arc", key="train.losses")
    with pytest.raises(ValueError, match=r"^unknown loss term 'arc': known loss terms are ce, triplet$"):
        reg.get("arc")
    assert isinstance(reg.unknown("x"), ValueError)
    assert "known classes" in str(Registry("class", plural="classes").unknown("x"))


def test_bad_names_and_lazy_strings_fail_at_registration():
    reg: Registry = Registry("widget")
    with pytest.raises(ValueError, match=r"a lazy entry is 'package.module:attribute', got 'os.path.join'"):
        reg.register("join", "os.path.join")
    with pytest.raises(ValueError, match=r"a lazy entry is 'package.module:attribute', got 'a:b:c'"):
        reg.register("abc", "a:b:c")
    with pytest.raises(ValueError, match="widget names are non-empty strings, got 3"):
        reg.register(3, min)
    reg.register("missing", "os.path:no_such_function")
    with pytest.raises(AttributeError, match="no_such_function"):
        reg.get("missing")  # a lazy entry that does not resolve names its attribute


def test_every_registry_of_the_package_is_a_registry():
    from stra_jax.convert.layouts import LAYOUTS
    from stra_jax.data.face.dataset import FACE_READERS
    from stra_jax.data.reid import REID_READERS
    from stra_jax.evaluation.evaluators import EVALUATORS
    from stra_jax.models.heads import HEADS
    from stra_jax.models.registry import MODELS
    from stra_jax.tasks import TASKS

    for reg in (LAYOUTS, FACE_READERS, REID_READERS, EVALUATORS, HEADS, MODELS, TASKS):
        assert isinstance(reg, Registry) and len(reg) > 0, reg
    # Built-ins register beside their code: the names a config can use are all there.
    assert {"market1501", "cuhk03_labeled", "synthetic", "folder", "csv"} <= set(REID_READERS)
    assert FACE_READERS.names() == ["folder", "recordio", "synthetic_faces"]
    assert {"resnet50", "stra_resnet50_face", "se_resnet50", "sasa_resnet50", "stra_mobilenetv2_x1_4"} <= set(MODELS)
    assert HEADS.names() == ["face", "reid"]


def test_a_reid_reader_registered_from_outside_is_read_by_prepare_dataset(tmp_path):
    from stra_jax.data.reid import REID_READERS, ReIDDataset, Record, prepare_dataset
    from stra_jax.data.reid.common import build_dataset

    @REID_READERS.register("tiny_outside")
    def read_tiny(root, flavour: str = "plain") -> ReIDDataset:
        records = [Record(str(tmp_path / f"{i}.jpg"), pid=i % 2, camid=i % 3) for i in range(4)]
        return build_dataset(f"tiny_{flavour}", tmp_path, records, records[:2], records[2:])

    try:
        dataset = prepare_dataset("tiny_outside", tmp_path, options={"flavour": "spicy"})
        assert dataset.name == "tiny_spicy" and len(dataset.train) == 4
        with pytest.raises(ValueError, match=r"not options of the 'tiny_outside' reader; its options: \['flavour'\]"):
            prepare_dataset("tiny_outside", tmp_path, options={"colour": "red"})
    finally:
        REID_READERS.unregister("tiny_outside")
    with pytest.raises(ValueError, match="unknown dataset 'tiny_outside'"):
        prepare_dataset("tiny_outside", tmp_path)
