"""Analysis and drawing speed: `rkcompile.analyze` against torch.fx's ShapeProp on the same graph, `draw` of every spec.

ShapeProp runs the graph once on a real input of the same batch, and once more on meta tensors (the same
network built on the meta device: shapes only, no data); `analyze` runs it on meta tensors (twice: the model
and its Euler manifestation) and copies the records of repeated blocks. Repetitions are interleaved. Each
spec is drawn twice: `draw()` in this process (after one untimed warm-up drawing), and `rkcompile draw` as a
fresh process (Python start-up, `import torch` and first-use set-up included), beside the time of a process
that only imports torch.

    python benchmarks/analysis.py [--smoke] [--out benchmarks/results]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
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
FIRST_META_OP = "import torch; torch.empty(2, device='meta') + 1"


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
    meta = rkcompile.build(ROOT / "specs" / "continuousnet-8-8-8.yaml", cn_overrides(n), device="meta")
    xm = meta_input(meta.spec, batch, torch.float32)
    ShapeProp(small.to("meta")).propagate(meta_input(small.spec, batch, torch.float32))
    a, s, m, ac, sc, mc = [], [], [], [], [], []
    for _ in range(reps):
        a.append(seconds(lambda: ac.append(cpu_seconds(lambda: rkcompile.analyze(model, batch=batch)))))
        s.append(seconds(lambda: sc.append(cpu_seconds(lambda: ShapeProp(model).propagate(x)))))
        m.append(seconds(lambda: mc.append(cpu_seconds(lambda: ShapeProp(meta).propagate(xm)))))
    return {"network": f"continuousnet-{n}-{n}-{n}", "graph_nodes": len(model.graph.nodes), "batch": batch,
            "analyze_s": statistics.median(a), "shapeprop_s": statistics.median(s),
            "ratio": statistics.median(x / y for x, y in zip(a, s)), "analyze_cpu_s": statistics.median(ac),
            "shapeprop_cpu_s": statistics.median(sc), "shapeprop_meta_s": statistics.median(m),
            "shapeprop_meta_cpu_s": statistics.median(mc), "ratio_meta": statistics.median(x / y for x, y in zip(a, m)),
            "reps": reps}


def draw_times(specs: list[Path], cli: set[str] | None = None) -> list[dict]:
    """Wall and CPU seconds to draw each spec to SVG at the network level (build, analysis, graphviz layout):
    `draw()` in this process, and the `rkcompile draw` command in a fresh one (for the specs named in `cli`,
    or every spec when it is None)."""
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        draw(ROOT / "specs" / "spirals-rk4.yaml", Path(tmp) / "warm-up.svg")  # first-use set-up: not timed
        for spec in specs:
            wall = time.perf_counter()
            cpu = cpu_seconds(lambda spec=spec: draw(spec, Path(tmp) / f"{spec.stem}.svg"))
            row = {"spec": spec.name, "draw_s": time.perf_counter() - wall, "draw_cpu_s": cpu}
            if cli is None or spec.stem in cli:
                command = [sys.executable, "-m", "rkcompile", "draw", str(spec), "-o", str(Path(tmp) / "cli.svg")]
                row["cli_s"], row["cli_cpu_s"] = process_seconds(command)
            rows.append(row)
            command_time = f"; rkcompile draw {row['cli_s']:6.2f} s (CPU {row['cli_cpu_s']:.2f} s)" if "cli_s" in row else ""
            print(f"draw {spec.name:<40} {row['draw_s']:6.2f} s (CPU {cpu:.2f} s){command_time}", flush=True)
    return rows


def process_seconds(command: list[str]) -> tuple[float, float]:
    """Wall and CPU seconds of a fresh process running `command` (which must succeed)."""
    before, wall = os.times(), time.perf_counter()
    subprocess.run(command, check=True, capture_output=True)
    after = os.times()
    return time.perf_counter() - wall, (after[2] - before[2]) + (after[3] - before[3])


def table(results: dict) -> str:
    """Markdown of a run."""
    a = results["analysis"]
    imp = results["import_torch"]
    lines = [f"Load average {results['load_average_start'][0]:.2f} at the start, {results['load_average_end'][0]:.2f} "
             "at the end.", "", "| network | graph nodes | batch | what | wall (s) | CPU (s) | analyze / it (wall) |",
             "|---|---:|---:|---|---:|---:|---:|"]
    for what, wall, cpu, ratio in (("rkcompile.analyze (model + Euler manifestation)", a["analyze_s"],
                                    a["analyze_cpu_s"], None),
                                   ("ShapeProp, real input", a["shapeprop_s"], a["shapeprop_cpu_s"], a["ratio"]),
                                   ("ShapeProp, meta tensors", a["shapeprop_meta_s"], a["shapeprop_meta_cpu_s"],
                                    a["ratio_meta"])):
        lines.append(f"| {a['network']} | {a['graph_nodes']:,} | {a['batch']} | {what} | {wall:.2f} | {cpu:.2f} | "
                     f"{'–' if ratio is None else f'{ratio:.2f}x'} |")
    meta = results.get("first_meta_op")
    lines += ["", f"A process that only imports torch: {imp[0]:.2f} s wall, {imp[1]:.2f} s CPU."
              + (f" One that also adds two meta tensors (`{FIRST_META_OP}`; torch imports torch._dynamo on the "
                 f"first call of a Python meta kernel): {meta[0]:.2f} s wall, {meta[1]:.2f} s CPU." if meta else ""), "",
              "| spec | draw() (s) | CPU (s) | rkcompile draw (s) | CPU (s) |", "|---|---:|---:|---:|---:|"]
    lines += [f"| {r['spec']} | {r['draw_s']:.2f} | {r['draw_cpu_s']:.2f} | "
              + (f"{r['cli_s']:.2f} | {r['cli_cpu_s']:.2f} |" if "cli_s" in r else "– | – |") for r in results["draw"]]
    for key, what in (("draw_s", "draw()"), ("cli_s", "rkcompile draw")):
        timed = [r for r in results["draw"] if key in r]
        if not timed:
            continue
        worst = max(timed, key=lambda r: r[key])
        cpu = worst[key.replace("_s", "_cpu_s")]
        slowest_cpu = max(timed, key=lambda r: r[key.replace("_s", "_cpu_s")])
        lines.append(f"\nSlowest {what}: {worst['spec']} in {worst[key]:.2f} s wall ({cpu:.2f} s CPU); "
                     f"{sum(r[key] < 3 for r in timed)} of {len(timed)} under 3 s wall; the most CPU: "
                     f"{slowest_cpu['spec']}, {slowest_cpu[key.replace('_s', '_cpu_s')]:.2f} s.")
    cli = [r["cli_s"] for r in results["draw"] if "cli_s" in r]
    if cli and meta:
        lines.append(f"\nrkcompile draw over the first-meta-op process: median {statistics.median(cli) - meta[0]:+.2f} s "
                     f"(from {min(cli) - meta[0]:+.2f} to {max(cli) - meta[0]:+.2f} s).")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    """Command line: measure, print, and write analysis.{json,md} under --out."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--smoke", action="store_true", help="ContinuousNet 2-2-2, one repetition, two specs drawn.")
    p.add_argument("--out", default=None, help="Directory for the results (default benchmarks/results; none "
                                               "with --smoke unless given).")
    p.add_argument("--cli", default=None, help="Comma-separated spec names to time as `rkcompile draw` processes "
                                               "too (default: every spec drawn).")
    args = p.parse_args(argv)
    torch.set_num_threads(2)
    results = {"torch": torch.__version__, "load_average_start": list(os.getloadavg())}
    results["analysis"] = analysis_vs_shapeprop(2 if args.smoke else 32, 1, 1 if args.smoke else 7)
    results["import_torch"] = process_seconds([sys.executable, "-c", "import torch"])
    # the floor of any tool that computes on meta tensors: torch imports torch._dynamo on the first meta-kernel call
    results["first_meta_op"] = process_seconds([sys.executable, "-c", FIRST_META_OP])
    specs = sorted((ROOT / "specs").glob("*.yaml"))
    results["draw"] = draw_times(specs[:2] if args.smoke else specs, set(args.cli.split(",")) if args.cli else None)
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
