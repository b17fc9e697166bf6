"""Drawing options: tensor shapes on edges, left-to-right layout, colour metrics, the Butcher-matrix view."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from test_render import evaluations, parse, steps
from torch.fx.passes.shape_prop import ShapeProp

from rkcompile.analysis import analyze
from rkcompile.analysis.units import node_unit
from rkcompile.cli import cli
from rkcompile.compiler import build
from rkcompile.render import RenderError, to_dot
from rkcompile.render.tables import PALETTE

SPECS = Path(__file__).parent.parent / "specs"


@pytest.fixture(scope="module")
def continuousnet():
    return build(SPECS / "continuousnet-2-2-2.yaml")


def test_shapes_label_the_edges_between_units_with_the_real_tensor_shapes(continuousnet):
    reference = build(continuousnet.spec).eval()
    ShapeProp(reference).propagate(torch.randn(1, 3, 32, 32))  # a real forward, independent of the analysis
    out_shape = {}
    for n in reference.graph.nodes:
        if node_unit(n) is not None:
            out_shape[node_unit(n).replace(".", "_")] = "×".join(map(str, n.meta["tensor_meta"].shape))
    top = parse(to_dot(continuousnet, level="block", shapes=True))[""]
    labelled = [(a, b, label) for a, b, label in top["edges"] if label]
    assert len(labelled) == len(out_shape) + 1  # into every unit, and into the output
    for a, _, label in labelled:
        if a == "x":
            assert label == "1×3×32×32"
        else:
            unit = max((u for u in out_shape if a.startswith(u + "_")), key=len)
            assert label == out_shape[unit], (a, label)
    assert ("stage1_block0_y_in", "stage1_block0_y_out", "skip · 1×32×16×16") in \
        parse(to_dot(continuousnet, level="block", shapes=True))["cluster_stage1_block0"]["edges"]
    assert all(label is None for _, _, label in parse(to_dot(continuousnet, level="block"))[""]["edges"])


def test_rankdir_lr(continuousnet):
    assert "rankdir=LR" in to_dot(continuousnet, rankdir="LR") and "rankdir=TB" in to_dot(continuousnet)


@pytest.mark.parametrize("metric, field", [("inference", "inference_peak"), ("saved", "saved_bytes"),
                                           ("training", "training_peak"), ("flops", "flops")])
def test_color_by_paints_the_largest_unit_darkest(continuousnet, metric, field):
    report = analyze(continuousnet)
    clusters = parse(to_dot(continuousnet, level="block", color_by=metric))
    fills = {}
    for name, c in clusters.items():
        m = re.search(r'fillcolor="(#\w+)"', c["label"])
        if name and m:
            fills[name.removeprefix("cluster_")] = m[1]
    values = {u.label.replace(".", "_"): getattr(u, field) for u in report.units}
    assert set(fills) == set(values)
    high, low = max(values.values()), min(values.values())
    assert {fills[u] for u, v in values.items() if v == high} == {PALETTE[-1]}
    assert {fills[u] for u, v in values.items() if v == low} == {PALETTE[0]}
    ranked = sorted(values, key=values.get)
    assert [PALETTE.index(fills[u]) for u in ranked] == sorted(PALETTE.index(fills[u]) for u in ranked)


def test_dense_tableau_is_drawn_as_its_butcher_matrix_by_default():
    model = build(SPECS / "ho-resnet58-verner89.yaml")
    tableau = model.spec.stages[0].tableau.pruned()
    for cluster in steps(parse(to_dot(model, level="block"))).values():
        assert evaluations(cluster) == []  # no k_i nodes, no coefficient edges
        (name, label), = [(n, v) for n, v in cluster["nodes"].items() if n.endswith("_tableau")]
        cells = re.findall(r'<TD BGCOLOR="#\w+">([^<]+)</TD>', label)
        nonzero = [x for row in tableau.A for x in row if x != 0] + [x for x in tableau.b if x != 0]
        assert len(cells) == len(nonzero) == 64
        for exact in ("103/1680", "-27/140", "76/105", "1024/1365", "1/12"):
            assert exact in cells
        assert [f"k<SUB>{i}</SUB>" in label for i in range(1, 15)] == [True] * 14


def test_sparse_tableau_stays_a_dag_unless_asked(continuousnet):
    rk4 = build(SPECS / "ho-resnet58-rk4.yaml")
    auto = steps(parse(to_dot(rk4, level="block")))
    assert all(evaluations(c) == [1, 2, 3, 4] for c in auto.values())
    forced = parse(to_dot(rk4, level="block", tableau_view="matrix"))["cluster_stage0_block0"]
    label = forced["nodes"]["stage0_block0_tableau"]
    assert sorted(re.findall(r'<TD BGCOLOR="#\w+">([^<]+)</TD>', label)) == sorted(["1/2", "1/2", "1", "1/6", "1/3",
                                                                                    "1/3", "1/6"])
    assert ("stage0_block0_y_in", "stage0_block0_y_out", "skip") in forced["edges"]


@pytest.mark.parametrize("kwargs, message", [
    ({"rankdir": "RL"}, "unknown rankdir 'RL': expected one of TB, LR"),
    ({"tableau_view": "matrx"}, "unknown tableau view 'matrx' (did you mean 'matrix'?): expected one of auto, dag, "
                                "matrix"),
    ({"color_by": "flop"}, "unknown colour metric 'flop' (did you mean 'flops'?): expected one of inference, saved, "
                           "training, flops"),
])
def test_bad_options_are_one_line(continuousnet, kwargs, message):
    with pytest.raises(RenderError) as e:
        to_dot(continuousnet, **kwargs)
    assert str(e.value) == message


def test_cli_options(tmp_path):
    out = tmp_path / "v.dot"
    args = ["draw", SPECS / "ho-resnet58-rk4.yaml", "-o", out, "--shapes", "--rankdir", "LR", "--color-by", "flops",
            "--tableau-view", "matrix", "--level", "block"]
    result = CliRunner().invoke(cli, [str(a) for a in args])
    assert result.exit_code == 0, result.output
    text = out.read_text()
    assert "rankdir=LR" in text and "stage0_block0_tableau" in text and "skip · 1×64×32×32" in text
    assert "fill colour: FLOPs of the block" in text
    bad = CliRunner().invoke(cli, ["draw", str(SPECS / "ho-resnet58-rk4.yaml"), "-o", str(out), "--rankdir", "RL"])
    assert bad.exit_code == 2 and "'RL' is not one of 'TB', 'LR'" in bad.stderr
