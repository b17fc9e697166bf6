"""The renderer: DOT structure read back by a small parser, figures against the analysis, files, errors, CLI."""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
from collections import Counter
from fractions import Fraction
from pathlib import Path

import pytest
from click.testing import CliRunner

from rkcompile.analysis import analyze
from rkcompile.artifact import save
from rkcompile.cli import _Group, cli
from rkcompile.cli_draw import draw as draw_command
from rkcompile.compiler import build
from rkcompile.render import GraphvizMissingError, RenderError, draw, to_dot
from rkcompile.render.metrics import FIELDS, size

ROOT = Path(__file__).parent.parent
SPECS = ROOT / "specs"
INVALID = ROOT / "tests" / "invalid"
HAS_DOT = shutil.which("dot") is not None
INSTALL_HINT = "install graphviz: apt-get install graphviz (Debian/Ubuntu) or brew install graphviz"


def parse(source: str) -> dict:
    """Clusters of DOT text written by the graphviz package: {name: {"label", "nodes", "edges"}}, plus "" for the top."""
    clusters: dict[str, dict] = {"": {"label": "", "nodes": {}, "edges": []}}
    stack = [""]
    for line in source.splitlines():
        text = line.strip()
        if m := re.match(r"subgraph (cluster_\w+) \{$", text):
            clusters[m[1]] = {"label": "", "nodes": {}, "edges": []}
            stack.append(m[1])
        elif text == "{":
            stack.append(stack[-1])  # an anonymous rank group belongs to its cluster
        elif text == "}":
            stack.pop()
        elif m := re.match(r"(\w+) -> (\w+)(?: \[(.*)\])?$", text):
            label = re.search(r'\blabel=(?:"([^"]*)"|([^\s\]<]+))', m[3] or "")
            clusters[stack[-1]]["edges"].append((m[1], m[2], (label[1] or label[2]) if label else None))
        elif m := re.match(r"(\w+) \[(.*)\]$", text):
            clusters[stack[-1]]["nodes"][m[1]] = m[2]
        elif text.startswith(("color=", "label=")) and len(stack) > 1:
            clusters[stack[-1]]["label"] = text
    return clusters


def steps(clusters: dict) -> dict:
    return {name: c for name, c in clusters.items() if re.fullmatch(r"cluster_stage\d+_block\d+(_to_\d+)?", name)}


def evaluations(cluster: dict) -> list[int]:
    return sorted(int(m[1]) for n in cluster["nodes"] if (m := re.fullmatch(r"\w+_k(\d+)", n)))


@pytest.fixture(scope="module")
def rk4():
    return build(SPECS / "ho-resnet58-rk4.yaml")


# ------------------------------------------------------------------ structure


@pytest.mark.parametrize("name", ["ho-resnet58-rk4", "resnet14-cifar10", "continuousnet-2-2-2", "pendulum-odenet"])
def test_block_level_has_one_cluster_per_unit(name):
    model = build(SPECS / f"{name}.yaml")
    clusters = parse(to_dot(model, level="block"))
    labels = [u.label for u in analyze(model).units]
    assert sorted(clusters) == sorted([""] + [f"cluster_{label.replace('.', '_')}" for label in labels])
    for spec_stage, stage in enumerate(model.spec.stages):
        mine = [c for n, c in steps(clusters).items() if n.startswith(f"cluster_stage{spec_stage}_")]
        assert len(mine) == stage.blocks
        assert all(evaluations(c) == list(range(1, stage.tableau.stages + 1)) for c in mine)


def test_rk4_edges_carry_exact_coefficients(rk4):
    block = parse(to_dot(rk4, level="block"))["cluster_stage0_block0"]
    edges = block["edges"]
    into = Counter(label for a, b, label in edges if re.search(r"_k\d+$", a) and re.search(r"_k\d+$", b))
    out = Counter(label for a, b, label in edges if re.search(r"_k\d+$", a) and b.endswith("_y_out"))
    assert into == Counter({"1/2": 2, "1": 1})
    assert out == Counter({"1/6": 2, "1/3": 2})
    assert ("stage0_block0_y_in", "stage0_block0_y_out", "skip") in edges  # the skip connection
    assert "t = t<SUB>0</SUB> + 1/2·h = 1/2" in block["nodes"]["stage0_block0_k2"]
    assert "F[block0.eval2]" in block["nodes"]["stage0_block0_k2"]


def test_basis_weights_and_times_in_continuousnet():
    model = build(SPECS / "continuousnet-2-2-2.yaml")
    block = parse(to_dot(model, level="block"))["cluster_stage1_block1"]
    k3 = block["nodes"]["stage1_block1_k3"]
    assert "F[piece1]" in k3 and "t = t<SUB>1</SUB> + 1/2·h = 3/4" in k3  # h = 1/2, c_3 = 1/2
    assert Counter(label for _, b, label in block["edges"] if b.endswith("_y_out") and label != "skip") == \
        Counter({"1/12": 2, "1/6": 2})  # b_i·h with h = 1/2


def test_verner89_blocks_show_fourteen_evaluations():
    model = build(SPECS / "ho-resnet58-verner89.yaml")
    blocks = steps(parse(to_dot(model, level="block", tableau_view="dag")))  # the default draws it as a matrix
    assert len(blocks) == 2
    b = model.spec.stages[0].tableau.b
    for cluster in blocks.values():
        assert evaluations(cluster) == list(range(1, 15))  # stages 15 and 16 only serve the error estimate
        out = sorted(Fraction(label) for _, t, label in cluster["edges"] if t.endswith("_y_out") and label != "skip")
        assert out == sorted(x for x in b if x != 0) and sum(out) == 1


def test_learned_step_size_is_shown():
    model = build(SPECS / "ho-resnet58-verner89-adaptive.yaml")
    block = parse(to_dot(model, level="block", tableau_view="dag"))["cluster_stage0_block0"]
    assert ("stage0_block0_k1", "stage0_block0_k2", "1/12·h") in block["edges"]
    assert "h learned (per block)" in block["nodes"]["stage0_block0_k1"]


@pytest.mark.parametrize("name, runs", [
    ("continuousnet-8-8-8", ["×8", "×8", "×8"]),
    ("resnet122-cifar10", ["×20", "×19", "×19"]),
    ("ho-resnet58-rk4", ["×7"]),
    ("ho-resnet58-verner89", ["×2"]),
])
def test_network_level_collapses_identical_blocks(name, runs):
    clusters = steps(parse(to_dot(SPECS / f"{name}.yaml", level="network")))
    assert [re.search(r"×\d+", c["label"])[0] for c in clusters.values()] == runs


# A stem ending in ReLU whose output block 0's pre-activation F saves again (nothing new), while later blocks'
# inputs are sums it saves: block 0 saves less than blocks 1-3, yet has the same layers, shapes and tableau.
UNIFORM = """
name: uniform
input: {channels: 3, height: 8, width: 8}
stem: {kind: conv, channels: 8, kernel: 3, act: relu}
stages:
  - channels: 8
    module: {kind: basic, form: pre}
    integrator: INTEGRATOR
    evaluations: EVALUATIONS
output: {classes: 10}
"""


@pytest.mark.parametrize("integrator, evaluations, blocks", [("euler", 4, 4), ("kutta3", 6, 2), ("rk4", 8, 2)])
def test_uniform_stage_collapses_by_structure_and_shows_ranges(integrator, evaluations, blocks):
    from rkcompile.load import parse_spec

    model = build(parse_spec(UNIFORM.replace("INTEGRATOR", integrator).replace("EVALUATIONS", str(evaluations))))
    report = analyze(model)
    saved = [report.row(f"stage0.block{b}").saved_bytes for b in range(blocks)]
    assert saved[0] < saved[1] == saved[-1]  # the figures differ, the structure does not
    clusters = steps(parse(to_dot(model, level="network")))
    assert list(clusters) == [f"cluster_stage0_block0_to_{blocks - 1}"]
    (cluster,) = clusters.values()
    assert f"blocks 0–{blocks - 1}</B>  <B>×{blocks}</B>" in cluster["label"]
    table = cluster["nodes"][f"stage0_block0_to_{blocks - 1}_table"]
    assert f"each of ×{blocks}" in table
    assert f">{size(saved[0]).split()[0]}–{size(saved[1])}<" in table  # e.g. 6.12–8.12 KiB
    inference = report.row("stage0.block0").inference_peak
    assert f">{size(inference)}<" in table  # equal in every block: one figure


def test_blocks_of_another_structure_are_not_collapsed():
    from rkcompile.load import parse_spec

    # the same tableau, but a linear basis of 4 nodes on [0, 2]: block 0's k_1 sits on a node (one term), block 1's
    # on none (two)
    spec = UNIFORM.replace("INTEGRATOR", "rk4").replace("EVALUATIONS", "8").replace(
        "output:", "    weights: {kind: basis, functions: linear, pieces: 4}\noutput:")
    clusters = steps(parse(to_dot(build(parse_spec(spec)), level="network")))
    assert list(clusters) == ["cluster_stage0_block0", "cluster_stage0_block1"]


def test_stage_level_draws_one_box_per_stage():
    model = build(SPECS / "resnet50-imagenet.yaml")
    top = parse(to_dot(model, level="stage"))
    assert len(top) == 1  # no clusters
    boxes = [n for n in top[""]["nodes"] if re.fullmatch(r"stage\d+", n)]
    assert boxes == [f"stage{i}" for i in range(4)]
    assert "steps × evaluations</TD><TD ALIGN=\"LEFT\">3 × 1 = 3" in top[""]["nodes"]["stage1"]


# ------------------------------------------------------------------ numbers


@pytest.mark.parametrize("name, batch", [("ho-resnet58-rk4", 1), ("continuousnet-2-2-2", 4), ("resnet50-imagenet", 2)])
def test_tables_show_the_analysis_numbers(name, batch):
    model = build(SPECS / f"{name}.yaml")
    report = analyze(model, batch=batch)
    nodes = {}
    for cluster in parse(to_dot(model, level="block", batch=batch)).values():
        nodes.update(cluster["nodes"])
    for row in report.units:
        attrs = nodes[f"{row.label.replace('.', '_')}_table"]
        exact = dict(re.findall(r"(\w+)=(\d+)", re.search(r'tooltip="([^"]*)"', attrs)[1]))
        assert {f: int(exact[f]) for f in FIELDS} == {f: getattr(row, f) for f in FIELDS}
        assert f">{size(row.inference_peak)}<" in attrs and f">{size(row.saved_bytes)}<" in attrs
    stage_level = parse(to_dot(model, level="stage", batch=batch))[""]["nodes"]
    for row in report.stages:
        assert f"parameters={row.parameters}," in stage_level[row.label]


def test_human_units():
    from rkcompile.render.metrics import count, flops

    assert [count(252), count(36_928), count(2_074_058), flops(4_230_000_000)] == ["252", "36.9K", "2.07M", "4.23G"]
    assert size(1024) == "1.00 KiB" and size(None) == "–"


# ------------------------------------------------------------------ files


@pytest.mark.skipif(not HAS_DOT, reason="graphviz's dot is not installed")
@pytest.mark.parametrize("suffix, magic", [(".svg", b"<?xml"), (".png", b"\x89PNG"), (".pdf", b"%PDF"),
                                           (".dot", b"digraph")])
def test_draw_writes_each_format(tmp_path, rk4, suffix, magic):
    out = draw(rk4, tmp_path / f"net{suffix}", level="network")
    assert out.read_bytes().startswith(magic)


def test_dot_needs_no_binary_and_svg_says_how_to_install(tmp_path, monkeypatch, rk4):
    monkeypatch.setenv("PATH", str(tmp_path))  # no `dot` anywhere
    assert shutil.which("dot") is None
    assert draw(rk4, tmp_path / "net.dot").read_text().startswith("digraph")
    with pytest.raises(GraphvizMissingError) as e:
        draw(rk4, tmp_path / "net.svg")
    assert str(e.value) == f"cannot write svg without graphviz's `dot` program; {INSTALL_HINT}"
    assert not (tmp_path / "net.svg").exists()


def test_svg_is_reproducible(tmp_path, rk4):
    if not HAS_DOT:
        pytest.skip("graphviz's dot is not installed")
    a, b = draw(rk4, tmp_path / "a.svg"), draw(rk4, tmp_path / "b.svg")
    assert a.read_bytes() == b.read_bytes() and b"Generated by graphviz" not in a.read_bytes()


@pytest.mark.parametrize("kwargs, message", [
    ({"out_path": "x.jpg"}, "unknown format 'jpg' (did you mean 'png'?): expected one of dot, html, pdf, png, svg"),
    ({"out_path": "x"}, "cannot tell the format of x (no suffix): expected one of dot, html, pdf, png, svg"),
    ({"out_path": "x.svg", "format": "png"}, "format 'png' does not match the suffix of x.svg: use x.png"),
    ({"out_path": "x.svg", "level": "stages"}, "unknown level 'stages' (did you mean 'stage'?): expected one of "
                                                "network, stage, block"),
])
def test_draw_errors(tmp_path, monkeypatch, rk4, kwargs, message):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(RenderError) as e:
        draw(rk4, **kwargs)
    assert str(e.value) == message


# ------------------------------------------------------------------ command line


@pytest.fixture
def run():
    """Invoke `draw` registered on a throwaway group of the CLI's class (one-line errors, exit 1)."""
    group = _Group("rk", commands={"draw": draw_command})

    def invoke(*args):
        return CliRunner().invoke(group, ["draw", *map(str, args)])

    return invoke


def test_cli_draws_and_overwrites_a_named_output(tmp_path, run):
    out = tmp_path / "net.dot"
    out.write_text("old")
    result = run(SPECS / "pendulum-odenet.yaml", "-o", out, "--level", "block", "--batch", "3")
    assert result.exit_code == 0, result.output
    assert result.stdout == f"wrote {out} (block level, batch 3)\n"
    assert "batch 3" in out.read_text()


@pytest.mark.parametrize("name", ["misspelt-tableau.yaml", "indivisible-budget.yaml", "bad-yaml.yaml"])
def test_cli_invalid_spec_gives_the_check_error(tmp_path, run, name):
    checked = CliRunner().invoke(cli, ["check", str(INVALID / name)])
    result = run(INVALID / name, "-o", tmp_path / "x.dot")
    assert result.exit_code == 1
    assert result.stderr == checked.stderr.splitlines(keepends=True)[0]
    assert not (tmp_path / "x.dot").exists()


def test_cli_unknown_format_and_missing_directory(tmp_path, run):
    result = run(SPECS / "pendulum-odenet.yaml", "-o", tmp_path / "x.gif")
    assert (result.exit_code, result.stderr) == (1, "error: unknown format 'gif': expected one of dot, html, pdf, png, svg\n")
    result = run(SPECS / "pendulum-odenet.yaml", "-o", tmp_path / "nowhere" / "x.svg")
    assert result.stderr == f"error: cannot write {tmp_path / 'nowhere' / 'x.svg'}: directory {tmp_path / 'nowhere'} " \
                            "does not exist\n"


def test_cli_refuses_an_unwritable_directory(tmp_path, run, monkeypatch):
    locked = tmp_path / "locked"
    locked.mkdir()
    real = os.access
    monkeypatch.setattr(os, "access", lambda p, mode: False if Path(p) == locked else real(p, mode))  # root ignores modes
    result = run(SPECS / "pendulum-odenet.yaml", "-o", locked / "x.svg")
    assert (result.exit_code, result.stderr) == (1, f"error: cannot write {locked / 'x.svg'}: permission denied\n")


def test_cli_never_overwrites_its_input(tmp_path, run):
    spec = tmp_path / "net.dot"  # an input whose name looks like an output
    spec.write_text((SPECS / "pendulum-odenet.yaml").read_text())
    for args in (["-o", spec], ["-o", tmp_path / "net", "--format", "dot", "--force"], ["-o", tmp_path, "--format", "dot", "--force"]):
        result = run(spec, *args)
        assert (result.exit_code, result.stderr) == (1, f"error: refusing to overwrite the input file {spec}\n")
    assert spec.read_text() == (SPECS / "pendulum-odenet.yaml").read_text()


def test_cli_derived_output_needs_force(tmp_path, run):
    spec = SPECS / "pendulum-odenet.yaml"
    first = run(spec, "-o", tmp_path, "--format", "dot")
    assert first.exit_code == 0 and (tmp_path / "pendulum-odenet.dot").exists()
    again = run(spec, "-o", tmp_path, "--format", "dot")
    assert again.stderr == f"error: {tmp_path / 'pendulum-odenet.dot'} exists and was not named with -o: " \
                           "name it exactly, or pass --force\n"
    assert run(spec, "-o", tmp_path, "--format", "dot", "--force").exit_code == 0


def test_cli_saved_model_with_overrides(tmp_path, run):
    saved = tmp_path / "pendulum.pt"
    save(build(SPECS / "pendulum-odenet.yaml"), saved)
    assert run(saved, "-o", tmp_path / "a.dot").exit_code == 0
    assert run(saved, "-o", tmp_path / "b.dot", "--set", "stages.0.integrator=midpoint").exit_code == 0
    assert evaluations(steps(parse((tmp_path / "a.dot").read_text()))["cluster_stage0_block0"]) == [1, 2, 3, 4]
    assert evaluations(steps(parse((tmp_path / "b.dot").read_text()))["cluster_stage0_block0"]) == [1, 2]


def test_cli_memory_plot(tmp_path, run):
    result = run(SPECS / "ho-resnet58-rk4.yaml", "--memory-plot", tmp_path / "m.png", "--schemes", "euler,rk4")
    assert result.exit_code == 0, result.output
    assert (tmp_path / "m.png").read_bytes().startswith(b"\x89PNG")
    assert run(SPECS / "ho-resnet58-rk4.yaml").exit_code == 2  # nothing to write


# ------------------------------------------------------------------ memory plot


def test_scheme_memory_skips_schemes_that_do_not_fit():
    from rkcompile.memory_plot import scheme_memory

    data = scheme_memory(SPECS / "resnet122-cifar10.yaml")
    assert list(data.inference) == ["euler"]
    assert data.skipped["verner89"] == "stages[0].evaluations: a budget of 20 evaluations does not divide into " \
                                       "blocks of 14"
    assert set(data.skipped) == {"midpoint", "rk4", "verner89"}


def test_scheme_memory_saved_bytes_equal_eulers():
    """Equal parameters; constant-coefficient adds save nothing, so saved bytes match Euler's (ratio 1.000)."""
    from rkcompile.memory_plot import scheme_memory

    data = scheme_memory(SPECS / "ho-resnet58-euler.yaml", batch=2)
    assert not data.skipped and len(set(data.parameters.values())) == 1
    assert data.saved["rk4"] == data.saved["euler"] == data.saved["verner89"]
    assert data.inference["euler"] == data.inference["midpoint"] < data.inference["rk4"] < data.inference["verner89"]


def test_memory_plot_writes_png(tmp_path):
    from rkcompile.memory_plot import memory_plot

    out = memory_plot(SPECS / "resnet14-cifar10.yaml", tmp_path / "m.png", schemes="euler,verner89")
    assert out.read_bytes().startswith(b"\x89PNG")


# ------------------------------------------------------------------ gallery and speed


@pytest.mark.slow
def test_gallery_is_not_stale():
    spec = importlib.util.spec_from_file_location("gallery_make", ROOT / "gallery" / "make.py")
    make = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(make)
    assert make.stale() == [], "run .venv/bin/python gallery/make.py"


def test_ranges_write_a_shared_unit_once():
    from rkcompile.render.metrics import count, flops, spread

    assert spread([96 * 1024, 128 * 1024, 96 * 1024], size) == "96.00–128.00 KiB"
    assert spread([500, 2048], size) == "500 B–2.00 KiB"
    assert spread([2_070_000, 2_100_000], count) == "2.07–2.10M"
    assert spread([100, 100_000], flops) == "100–100K"
    assert spread([7, 7], size) == "7 B" and spread([None], size) == "–"
