"""Compile time against depth, read from benchmarks/compile.py's results (no compiles are run here).

benchmarks/compile.py measures, for ContinuousNet n-n-n (RK4, n steps and pieces per stage) and HO-ResNet-58, the
cold start (first forward+backward, compile included, fresh inductor cache, own process) of eager, `torch.compile`
of the flat graph ("full") and `rkcompile.compile(mode="regional")`. This experiment reads its JSON, says which of
the benchmark's points are missing, fits how each variant's cold start grows with the graph's nodes, and plots it.
The claim tested is the regional-compilation recipe's (PyTorch's "regional compilation" tutorial; rkcompile's
README): compiling one repeated block once makes the cold start (nearly) independent of depth, while a flat
compile grows with it.

    .venv/bin/python experiments/compile_depth.py [--smoke] [--source benchmarks/results/compile.json]
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
from common import ROOT, Clock, pyplot, save_figure, write_json

VARIANTS = ("eager", "full", "regional")
COLORS = {"eager": "tab:grey", "full": "tab:red", "regional": "tab:blue"}


class SourceError(Exception):
    """The benchmark's results cannot be read (shown as one line)."""


def benchmark():
    """benchmarks/compile.py as a module (its list of points is the reference for what should be there)."""
    spec = importlib.util.spec_from_file_location("rkcompile_benchmark_compile", ROOT / "benchmarks" / "compile.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def read(source: Path) -> dict:
    """The benchmark's JSON, checked for the fields used here."""
    try:
        data = json.loads(source.read_text())
    except (OSError, ValueError) as error:
        raise SourceError(f"{source}: cannot read the compile benchmark's results ({error}); run "
                          "benchmarks/compile.py first") from None
    if not isinstance(data, dict) or not isinstance(data.get("rows"), list):
        raise SourceError(f"{source}: not compile.py's results (no 'rows' list)")
    for i, row in enumerate(data["rows"]):
        missing = [k for k in ("point", "variant", "cold_s", "graph_nodes") if k not in row]
        if missing:
            raise SourceError(f"{source}: rows[{i}]: missing {', '.join(missing)}")
    return data


def fit(rows: list[dict]) -> dict | None:
    """Least-squares slope of log(cold start) against log(graph nodes), and the ratio deepest / shallowest."""
    pts = sorted((r["graph_nodes"], r["cold_s"]) for r in rows)
    if len(pts) < 2:
        return None
    slope = float(np.polyfit(np.log([n for n, _ in pts]), np.log([c for _, c in pts]), 1)[0])
    return {"points": len(pts), "nodes": [n for n, _ in pts], "cold_s": [c for _, c in pts], "exponent": slope,
            "ratio": pts[-1][1] / pts[0][1], "nodes_ratio": pts[-1][0] / pts[0][0]}


def main(argv: list[str] | None = None) -> int:
    import argparse

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--smoke", action="store_true", help="The same reading (it runs no compiles; seconds either way).")
    p.add_argument("--source", default=str(ROOT / "benchmarks" / "results" / "compile.json"),
                   help="compile.py's results JSON.")
    p.add_argument("--out", default=str(ROOT / "results" / "compile_depth"), help="Where the JSON and PNG go.")
    args = p.parse_args(argv)
    clock = Clock()
    try:
        data = read(Path(args.source))
    except SourceError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    Path(args.out).mkdir(parents=True, exist_ok=True)
    expected = [(point["name"], variant) for point in benchmark().POINTS for variant in VARIANTS]
    have = {(r["point"], r["variant"]) for r in data["rows"]}
    missing = [f"{name} {variant}" for name, variant in expected if (name, variant) not in have]
    for line in missing:
        print(f"note: the results lack {line}", flush=True)
    family = [r for r in data["rows"] if r["point"].startswith("continuousnet-")]
    fits = {v: fit([r for r in family if r["variant"] == v]) for v in VARIANTS}
    results = {"source": str(Path(args.source).resolve().relative_to(ROOT)) if Path(args.source).resolve().is_relative_to(ROOT)
               else str(args.source), "machine": data.get("machine", {}), "rows": data["rows"],
               "expected_points": [f"{n} {v}" for n, v in expected], "missing": missing, "fits": fits}
    results["claims"] = _claims(fits, missing, data.get("machine", {}))
    results["seconds"] = clock()
    write_json(Path(args.out) / "compile_depth.json", results)
    _plot(results, Path(args.out) / "compile_depth.png")
    for claim in results["claims"]:
        clock.log(f"{claim['verdict']}: {claim['claim']}: {claim['measured']}")
    clock.log(f"wrote {args.out}/compile_depth.json and compile_depth.png")
    return 0


def _claims(fits: dict, missing: list[str], machine: dict) -> list[dict]:
    """One row: regional cold start against depth, compared with the flat compile of the same networks."""
    full, regional = fits["full"], fits["regional"]
    load = machine.get("load_average_start", [None])[0]
    note = f"one cold start per point (load average {load:.1f} at the start)" if load is not None else "one cold start per point"
    if missing:
        note += f"; {len(missing)} benchmark points missing"
    if full is None or regional is None:
        return [{"claim": "regional compilation's cold start does not grow with depth; a flat compile's does",
                 "paper": "PyTorch regional compilation recipe", "measured": "fewer than two ContinuousNet depths "
                                                                            "measured for full and regional",
                 "verdict": "undecided", "why": note}]
    measured = (f"ContinuousNet {regional['nodes'][0]}→{regional['nodes'][-1]} graph nodes: regional cold start "
                f"×{regional['ratio']:.2f} (exponent {regional['exponent']:.2f}), full ×{full['ratio']:.2f} "
                f"(exponent {full['exponent']:.2f})")
    if regional["exponent"] < 0.2 and full["exponent"] > 0.5:
        verdict, why = "supported", "regional grows far less than full"
    elif regional["exponent"] < full["exponent"] / 2:
        verdict, why = "undecided", ("regional grows much less than full but still grows (sublinearly); "
                                     "'does not grow' is stronger than the data")
    else:
        verdict, why = "contradicted", "regional grows about as fast as full"
    return [{"claim": "regional compilation's cold start does not grow with depth; a flat compile's does",
             "paper": "PyTorch regional compilation recipe", "measured": measured, "verdict": verdict,
             "why": f"{why}; {note}"}]


def _plot(results: dict, path: Path) -> None:
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7.5, 4.6))
    for family, marker in (("continuousnet-", "o"), ("ho-resnet58-", "s")):
        for variant in VARIANTS:
            rows = sorted((r for r in results["rows"] if r["variant"] == variant and r["point"].startswith(family)),
                          key=lambda r: r["graph_nodes"])
            if rows:
                ax.loglog([r["graph_nodes"] for r in rows], [r["cold_s"] for r in rows], marker=marker,
                          ls="-" if family.startswith("continuous") else "none", color=COLORS[variant],
                          label=f"{family.rstrip('-')} {variant}")
                for r in rows:
                    ax.annotate(r["point"].replace(family, ""), (r["graph_nodes"], r["cold_s"]), fontsize=6,
                                xytext=(3, 3), textcoords="offset points")
    from matplotlib.ticker import FuncFormatter, NullFormatter

    nodes = sorted({r["graph_nodes"] for r in results["rows"]})
    ax.set_xticks(nodes, [f"{n:,}" for n in nodes])
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    ax.set(xlabel="graph nodes (depth)", ylabel="cold start: first forward+backward (s)")
    lack = len(results["missing"])
    ax.set_title(f"compile time vs depth (benchmarks/compile.py; {lack} point{'s' * (lack != 1)} missing)",
                 fontsize=10)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7)
    save_figure(fig, path)


if __name__ == "__main__":
    sys.exit(main())
