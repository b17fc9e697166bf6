"""The module-path grammar (rkcompile.naming): builders and the one parser agree; malformed paths are rejected."""

from __future__ import annotations

import pytest

from rkcompile import naming
from rkcompile.errors import RkcompileError

FORMS = [
    (naming.STEM, dict(kind="stem")),
    (naming.HEAD, dict(kind="head")),
    (naming.stage(2), dict(kind="stage", stage=2)),
    (naming.block(1, 12), dict(kind="block", stage=1, block=12)),
    (naming.evaluation(0, 3, 2), dict(kind="eval", stage=0, block=3, evaluation=2)),
    (naming.shared(4), dict(kind="shared", stage=4)),
    (naming.piece(1, 7), dict(kind="piece", stage=1, piece=7)),
    (naming.entry(3), dict(kind="entry", stage=3)),
    (naming.entry(3, "f"), dict(kind="entry", stage=3, part="f")),
    (naming.entry(3, "shortcut"), dict(kind="entry", stage=3, part="shortcut")),
    (naming.controller(0, 5), dict(kind="controller", stage=0, block=5)),
    (naming.controller(2), dict(kind="controller", stage=2)),
]
OWNERS = ["stem", "head", "stage2", "stage1.block12", "stage0.block3", "stage4", "stage1", "stage3.entry",
          "stage3.entry", "stage3.entry", "stage0.block5", "stage2"]


@pytest.mark.parametrize(("path", "fields"), FORMS, ids=[p for p, _ in FORMS])
@pytest.mark.parametrize("rest", ["", "conv1.weight", "bn1.running_mean"])
def test_builder_parser_round_trip(path: str, fields: dict, rest: str):
    full = f"{path}.{rest}" if rest else path
    if rest and fields["kind"] == "stage" or rest and fields["kind"] == "entry" and "part" not in fields:
        with pytest.raises(naming.NamingError):  # a stage or a whole entry holds no tensors of its own
            naming.parse(full)
        return
    parsed = naming.parse(full)
    for key, value in fields.items():
        assert getattr(parsed, key) == value, key
    assert parsed.rest == rest and parsed.base == path and str(parsed) == full


def test_owner_rule():
    assert [naming.owner(p) for p, _ in FORMS] == OWNERS


def test_node_names():
    assert naming.node_name(naming.evaluation(0, 3, 2), "conv1") == "stage0_block3_k2_conv1"
    assert naming.node_name(naming.entry(1, "shortcut"), "proj") == "stage1_entry_shortcut_proj"
    assert naming.node_name(naming.block(2, 0), "z3") == "stage2_block0_z3"
    assert naming.node_name(naming.STEM, "conv") == "stem_conv"
    assert naming.local(naming.evaluation(0, 3, 2)) == "block3.eval2" and naming.local(naming.piece(1, 0)) == "piece0"


@pytest.mark.parametrize(("path", "message"), [
    ("", "empty name between dots"),
    ("stage0..f", "empty name between dots"),
    ("stage0.", "empty name between dots"),
    ("stage", "expected stage{index}, found 'stage'"),
    ("stagex.f", "expected stage{index}, found 'stagex'"),
    ("stage01.f", "expected stage{index}, found 'stage01'"),
    ("stage-1.f", "expected stage{index}, found 'stage-1'"),
    ("layer1.0.conv1", "expected stage{index}, found 'layer1'"),
    ("stage0.block", "expected block{index}, found 'block'"),
    ("stage0.blockA.eval1", "expected block{index}, found 'blockA'"),
    ("stage0.block1.eval0", "evaluations count from 1, found 'eval0'"),
    ("stage0.block1.evalx", "expected eval{index}, found 'evalx'"),
    ("stage0.piece", "expected piece{index}, found 'piece'"),
    ("stage0.eval1", "after 'stage0' expected entry, block{b}, f, piece{p} or controller, found 'eval1'"),
    ("stage0.entry.g", "an entry has parts f and shortcut, found 'g'"),
])
def test_malformed_paths_are_rejected(path: str, message: str):
    with pytest.raises(naming.NamingError) as info:
        naming.parse(path)
    assert str(info.value) == f"'{path}' is not a module path: {message}"
    assert isinstance(info.value, RkcompileError)


def test_entry_builder_rejects_unknown_part():
    with pytest.raises(naming.NamingError, match="an entry has parts f and shortcut, found 'g'"):
        naming.entry(0, "g")
