"""Analysis and drawing speed: `rkcompile.analyze` against torch.fx's ShapeProp on the same graph, `draw` of every spec.

ShapeProp runs the graph once on a real input of the same batch; `analyze` runs it on meta tensors (twice: the
model and its Euler manifestation) and copies the records of repeated blocks. Repetitions are interleaved.

    python benchmarks/analysis.py [--smoke] [--out benchmarks/results]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
from torch.fx.passes.shape_prop import ShapeProp

import rkcompile
from rkcompile.analysis.propagate import meta_input
from rkcompile.files import write_file
from rkcompile.render import draw

ROOT = Path(__file__).resolve().parents[1]


def cn_overrides(n: int) -> dict:
    """ContinuousNet n-n-n: n RK4 steps and n basis pieces per stage."""
    return {**{f"stages.{s}.steps": n for s in range(3)},
            **{f"stages.{s}.weights": {"kind": "basis", "pieces": n} for s in range(3)}}


def seconds(fn) -> float:
    """Wall time of one call."""
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def cpu_seconds(fn) -> float:
    """CPU time of one call, this process and the child processes it waited for (graphviz)."""
    before = os.times()
    fn()
    after = os.times()
    return sum(after[i] - before[i] for i in range(4))


def analysis_vs_shapeprop(n: int, batch: int, reps: int) -> dict:
    """Median analyze and ShapeProp times on ContinuousNet n-n-n, interleaved, and their per-repetition ratio."""
    model = rkcompile.build(ROOT / "specs" / "continuousnet-8-8-8.yaml", cn_overrides(n))
    x = meta_input(model.spec, batch, torch.float32, device="cpu")
    small = rkcompile.build(ROOT / "specs" / "continuousnet-8-8-8.yaml", cn_overrides(1))
    rkcompile.analyze(small, batch=batch)  # the first meta-tensor run in a process sets up dispatch: not timed
    ShapeProp(small).propagate(meta_input(small.spec, batch, torch.float32, device="cpu"))
    a, s, ac, sc = [], [], [], []
    for _ in range(reps):
        a.append(seconds(lambda: ac.append(cpu_seconds(lambda: rkcompile.analyze(model, batch=batch)))))
        s.append(seconds(lambda: sc.append(cpu_seconds(lambda: ShapeProp(model).propagate(x)))))
    return {"network": f"continuousnet-{n}-{n}-{n}", "graph_nodes": len(model.graph.nodes), "batch": batch,
            "analyze_s": statistics.median(a), "shapeprop_s": statistics.median(s),
            "ratio": statistics.median(x / y for x, y in zip(a, s)), "analyze_cpu_s": statistics.median(ac),
            "shapeprop_cpu_s": statistics.median(sc), "reps": reps}


def draw_times(specs: list[Path]) -> list[dict]:
    """Wall and CPU seconds to draw each spec to SVG at the network level (build, analysis, graphviz layout)."""
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for spec in specs:
            wall = time.perf_counter()
            cpu = cpu_seconds(lambda spec=spec: draw(spec, Path(tmp) / f"{spec.stem}.svg"))
            rows.append({"spec": spec.name, "draw_s": time.perf_counter() - wall, "draw_cpu_s": cpu})
            print(f"draw {spec.name:<40} {rows[-1]['draw_s']:6.2f} s (CPU {cpu:.2f} s)", flush=True)
    return rows


def table(results: dict) -> str:
    """Markdown of a run."""
    a = results["analysis"]
    lines = [f"Load average {results['load_average_start'][0]:.2f} at the start, {results['load_average_end'][0]:.2f} "
             "at the end.", "", "| network | graph nodes | batch | analyze (s) | ShapeProp (s) | analyze / ShapeProp | CPU s: analyze / "
             "ShapeProp |", "|---|---:|---:|---:|---:|---:|---:|",
             f"| {a['network']} | {a['graph_nodes']:,} | {a['batch']} | {a['analyze_s']:.2f} | {a['shapeprop_s']:.2f} | "
             f"{a['ratio']:.2f}x | {a['analyze_cpu_s']:.2f} / {a['shapeprop_cpu_s']:.2f} |", "",
             "| spec | draw (s) | CPU (s) |", "|---|---:|---:|"]
    lines += [f"| {r['spec']} | {r['draw_s']:.2f} | {r['draw_cpu_s']:.2f} |" for r in results["draw"]]
    worst = max(results["draw"], key=lambda r: r["draw_s"])
    lines += ["", f"Slowest draw: {worst['spec']} in {worst['draw_s']:.2f} s ({worst['draw_cpu_s']:.2f} s CPU)."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    """Command line: measure, print, and write analysis.{json,md} under --out."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--smoke", action="store_true", help="ContinuousNet 2-2-2, one repetition, two specs drawn.")
    p.add_argument("--out", default=None, help="Directory for the results (default benchmarks/results; none "
                                               "with --smoke unless given).")
    args = p.parse_args(argv)
    torch.set_num_threads(2)
    results = {"torch": torch.__version__, "load_average_start": list(os.getloadavg())}
    results["analysis"] = analysis_vs_shapeprop(2 if args.smoke else 32, 1, 1 if args.smoke else 2)
    specs = sorted((ROOT / "specs").glob("*.yaml"))
    results["draw"] = draw_times(specs[:2] if args.smoke else specs)
    results["load_average_end"] = list(os.getloadavg())
    out = Path(args.out) if args.out else (None if args.smoke else ROOT / "benchmarks" / "results")
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        write_file(out / "analysis.json", json.dumps(results, indent=2) + "\n")
        write_file(out / "analysis.md", table(results))
    print(table(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
