"""The typed node record (rkcompile.graphmeta) on compiled graphs, tensor_meta, and one ownership rule for build and analyze."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch.fx.passes.shape_prop import ShapeProp

from rkcompile import graphmeta, naming
from rkcompile.analysis import analyze, predict
from rkcompile.compiler import build
from rkcompile.graphmeta import NodeMeta, Part, Role
from rkcompile.summary import units
from rkcompile.transforms import remanifest

SPECS = sorted(Path("specs").glob("*.yaml"))


@pytest.fixture(scope="module", params=SPECS, ids=[p.stem for p in SPECS])
def model(request):
    with torch.device("meta"):  # the graph and its records do not depend on the weights' values
        return build(request.param)


def test_every_node_carries_a_record_with_a_role(model):
    for node in model.graph.nodes:
        meta = graphmeta.get(node)
        if node.op == "output":
            assert meta is None
            continue
        assert isinstance(meta, NodeMeta) and isinstance(meta.role, Role), node.name
        assert (meta.role is Role.INPUT) == (node.op == "placeholder")
        assert (meta.unit is None) == (meta.role is Role.INPUT), node.name
        if meta.role is Role.EVAL:  # F's weights path, evaluation index and time are explicit
            assert meta.evaluation >= 1 and meta.time is not None and meta.block is not None
            assert naming.parse(meta.weights).kind in ("eval", "shared", "piece")
            if node.op == "call_module":
                assert str(node.target).startswith(meta.weights + ".")


def test_entry_parts_agree_with_the_module_targets(model):
    for node in model.graph.nodes:
        meta = graphmeta.get(node)
        if meta is None or not meta.entry:
            continue
        assert meta.block is None and meta.unit == naming.entry(meta.stage)
        if node.op == "call_module":  # the record says F or shortcut; the module path must say the same
            assert meta.part is Part(naming.parse(str(node.target)).part), node.name
        if meta.part is None:
            assert meta.role in (Role.OUTPUT, Role.AFTER), node.name


def test_stitch_and_transition_entries_have_both_parts():
    for spec, shortcut in (("specs/continuousnet-2-2-2.yaml", ["proj"]), ("specs/resnet50-imagenet.yaml", ["conv", "bn"]),
                           ("specs/resnet32-cifar10.yaml", ["subsample", "pad"])):
        with torch.device("meta"):
            m = build(spec)
        metas = [graphmeta.get(n) for n in m.graph.nodes]
        entry1 = [x for x in metas if x is not None and x.entry and x.stage == 1]
        assert [x.layer or "" for x in entry1 if x.part is Part.SHORTCUT] in (shortcut, ["", ""]), spec
        assert [x for x in entry1 if x.part is Part.F] and [x for x in entry1 if x.role is Role.OUTPUT]


def test_basis_records_name_the_piece():
    with torch.device("meta"):
        m = build("specs/continuousnet-2-2-2.yaml")
    for node in m.graph.nodes:
        meta = graphmeta.get(node)
        if meta is not None and meta.role is Role.EVAL:
            assert meta.weights == naming.piece(meta.stage, meta.piece)


def test_transforms_and_artifacts_keep_the_records(tmp_path):
    from rkcompile.artifact import load, save

    model = build("specs/spirals-rk4.yaml")
    euler = remanifest(model, "euler")
    save(model, tmp_path / "m.pt")
    for m in (euler, load(tmp_path / "m.pt")):
        assert all(isinstance(graphmeta.get(n), NodeMeta) for n in m.graph.nodes if n.op != "output")


def test_tensor_meta_matches_shape_prop_on_real_tensors():
    model = build("specs/resnet14-cifar10.yaml", {"input.height": 8, "input.width": 8}).double()
    predict(model, batch=2, dtype=torch.float64)
    predicted = {n.name: n.meta["tensor_meta"] for n in model.graph.nodes if "tensor_meta" in n.meta}
    for n in model.graph.nodes:
        n.meta.pop("tensor_meta", None)
    ShapeProp(model).propagate(torch.randn(2, 3, 8, 8, dtype=torch.float64))  # the reference: a real CPU run
    real = {n.name: n.meta["tensor_meta"] for n in model.graph.nodes if "tensor_meta" in n.meta}
    assert predicted.keys() == real.keys() and len(real) == len(model.graph.nodes)
    for name, ref in real.items():
        got = predicted[name]
        assert (got.shape, got.dtype, got.stride, got.requires_grad) == (ref.shape, ref.dtype, ref.stride,
                                                                           ref.requires_grad), name


def test_build_and_analyze_agree_per_unit(model):
    with torch.device("meta"):
        report = analyze(model)
    built = {u.label: u.parameters for u in units(model)}
    analyzed = {r.label: r.parameters for r in report.units}
    for s, stage in enumerate(report.stages):  # what a stage owns itself: its total less its units
        own = stage.parameters - sum(r.parameters for r in report.units if naming.parse(r.label).stage == s)
        if own:
            analyzed[naming.stage(s)] = own
    assert built == analyzed
    assert sum(built.values()) == report.total.parameters == sum(p.numel() for p in model.parameters())
