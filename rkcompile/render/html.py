"""The interactive view: one self-contained HTML file (graphviz's SVG at three levels, facts as JSON, a small script).

Nothing is fetched at view time: the SVGs, the stylesheet and the script are inline, and a Content-Security-
Policy forbids any other source. The script (`view.js`) zooms and pans, expands network → stage → block →
evaluation → layer by clicks (and collapses back), shows each unit's, evaluation's and layer's facts (shape,
parameters, inference-live bytes, saved bytes, FLOPs, the generated-code line), searches by name, and
recolours the units by inference peak, saved for backward, training peak or FLOPs.
"""

from __future__ import annotations

import json
import re
from html import escape
from pathlib import Path
from typing import Any

import torch
from torch import fx

from rkcompile.analysis.units import node_unit
from rkcompile.render.dot import dot_source
from rkcompile.render.metrics import FIELDS, Measures, measure
from rkcompile.render.structure import read_blocks
from rkcompile.render.tables import COLOR_BY, PALETTE

__all__ = ["HTML_LEVELS", "html_view", "write_html", "view_facts"]

#: The drawings embedded, from the most collapsed to the most expanded.
HTML_LEVELS = ("stage", "network", "block")
_HERE = Path(__file__).parent
_CSP = "default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'; img-src data:"


def html_view(model_or_spec, batch: int = 1, dtype: torch.dtype = torch.float32, *, level: str = "network",
              color_by: str = "inference", rankdir: str = "TB", shapes: bool = True, tableau_view: str = "auto",
              measures: Measures | None = None) -> str:
    """The HTML text of the interactive view, opening at `level` and coloured by `color_by`."""
    from rkcompile.render import as_model, check_options, render_bytes

    check_options(level, color_by, rankdir, tableau_view)
    model = as_model(model_or_spec, device="meta")  # a drawing needs shapes, not weights
    measures = measures or measure(model, batch=batch, dtype=dtype)
    svgs = {}
    for lvl in HTML_LEVELS:
        source = dot_source(model, measures, level=lvl, color_by=color_by, rankdir=rankdir, shapes=shapes,
                            tableau_view=tableau_view, ids=True)
        svgs[lvl] = _inline_svg(render_bytes(source, "svg").decode("utf-8"), lvl)
    facts = view_facts(model, measures)
    facts["view"] = {"level": level, "color_by": color_by, "palette": list(PALETTE), "metrics": list(COLOR_BY)}
    name = facts["name"]
    panes = "\n".join(f'<div class="pane" data-level="{lvl}"{"" if lvl == level else " hidden"}>{svg}</div>'
                      for lvl, svg in svgs.items())
    options = "".join(f'<option value="{m}"{" selected" if m == color_by else ""}>{m}</option>' for m in COLOR_BY)
    buttons = "".join(f'<button type="button" data-go="{lvl}">{lvl}</button>' for lvl in HTML_LEVELS)
    data = json.dumps(facts, separators=(",", ":")).replace("</", "<\\/")
    return (_read("view.html")
            .replace("{{CSP}}", _CSP).replace("{{TITLE}}", escape(name)).replace("{{CSS}}", _read("view.css"))
            .replace("{{LEVELS}}", buttons).replace("{{OPTIONS}}", options).replace("{{PANES}}", panes)
            .replace("{{DATA}}", data).replace("{{SCRIPT}}", _read("view.js")))


def write_html(model_or_spec, out_path: str | Path, batch: int = 1, *, inputs=(), **options) -> Path:
    """Write the interactive view to `out_path` (see `html_view` for the options), refusing any of `inputs`."""
    from rkcompile.files import write_file

    out = Path(out_path)
    write_file(out, html_view(model_or_spec, batch=batch, **options), inputs=inputs)
    return out


def view_facts(model: fx.GraphModule, measures: Measures) -> dict:
    """Per-unit, per-evaluation and per-node facts for the details panel and search (plain JSON data)."""
    code = _code_lines(model.code)
    nodes = {}
    for n in model.graph.nodes:
        cost = n.meta.get("cost")
        if cost is None or n.op == "output":
            continue
        params = 0
        if n.op == "call_module":
            params = sum(p.numel() for p in model.get_submodule(str(n.target)).parameters())
        line, text = code.get(n.name, (None, ""))
        nodes[n.name] = {"unit": node_unit(n), "op": n.op, "target": _target(n), "shape": cost.get("shape"),
                         "parameters": params, "live_bytes": cost.get("live_bytes"),
                         "saved_bytes": cost.get("saved_bytes"), "training_bytes": cost.get("training_bytes"),
                         "flops": cost.get("flops"), "line": line, "code": text}
    units = {}
    for view in read_blocks(model):
        row = measures.blocks.get(view.label)
        evals: list[dict[str, Any]] = [{"index": e.index, "weights": e.weights, "time": str(e.time), "layers": list(e.layers),
                  "nodes": list(e.nodes)} for e in view.evaluations]
        for e in evals:
            for name in e["nodes"]:
                if name in nodes:
                    nodes[name]["eval"] = e["index"]
        units[view.label] = {"kind": view.kind, "stage": view.stage, "nodes": list(view.node_names),
                             "evaluations": evals, **_numbers(row)}
    stages = {str(k): _numbers(v) for k, v in measures.stages.items()}
    name = getattr(getattr(model, "spec", None), "name", None) or type(model).__name__
    return {"name": name, "batch": measures.batch, "dtype": measures.dtype, "units": units, "stages": stages,
            "total": _numbers(measures.total), "nodes": nodes}


def _numbers(row) -> dict:
    return {f: getattr(row, f, None) for f in FIELDS}


def _target(n: fx.Node) -> str:
    return str(n.target) if isinstance(n.target, str) else getattr(n.target, "__name__", str(n.target))


def _code_lines(code: str) -> dict[str, tuple[int, str]]:
    """{value name: (line number, the line)} for each assignment in the generated forward()."""
    out: dict[str, tuple[int, str]] = {}
    for number, line in enumerate(code.splitlines(), 1):
        m = re.match(r"\s*(\w+) = ", line)
        if m:
            out.setdefault(m[1], (number, line.strip()))
    return out


def _inline_svg(svg: str, level: str) -> str:
    """graphviz's SVG made embeddable: no XML prolog or DOCTYPE, element ids prefixed by the level (unique)."""
    svg = svg[svg.index("<svg"):]
    return re.sub(r'\bid="', f'id="{level}/', svg)


def _read(name: str) -> str:
    return (_HERE / name).read_text(encoding="utf-8")
