"""Compile-time benchmark: cold-start and steady-state step time against depth, eager vs full vs regional compile.

Each point (network × variant) runs in a fresh process with a fresh inductor cache directory
(TORCHINDUCTOR_CACHE_DIR), so every compile is cold. Cold start = the first forward+backward (compile included);
steady state = the median forward+backward after it. Outputs are checked against the eager model's.
Points run variant by variant in the order given (`--variants`, `--points`), so the comparisons that matter
come first; a point still compiling after `--timeout` seconds is stopped and recorded as "more than" that
(a lower bound on its cold start).

    python benchmarks/compile.py [--smoke] [--variants eager,regional,full] [--points NAME,...] [--timeout S]
                                 [--out benchmarks/results] [--update]

`--update` reruns the chosen points and keeps the other rows of the existing results (each row records the load
average at its start).
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from rkcompile.files import write_file

ROOT = Path(__file__).resolve().parents[1]
VARIANTS = ("eager", "regional", "full")
CANDIDATES = ("nested",)  # regional via torch.compiler.nested_compile_region, measured and not kept


def cn_point(n: int, size: int = 16, batch: int = 2) -> dict:
    """ContinuousNet n-n-n (RK4, n steps and n basis pieces per stage) at a small input."""
    overrides = {**{f"stages.{s}.steps": n for s in range(3)},
                 **{f"stages.{s}.weights": {"kind": "basis", "pieces": n} for s in range(3)}}
    return {"name": f"continuousnet-{n}-{n}-{n}", "spec": "specs/continuousnet-8-8-8.yaml", "overrides": overrides,
            "input": [batch, 3, size, size]}


def ho_point(scheme: str, size: int = 16, batch: int = 2) -> dict:
    """HO-ResNet-58 (28 evaluations) with one scheme, at a small input."""
    return {"name": f"ho-resnet58-{scheme}", "spec": f"specs/ho-resnet58-{scheme}.yaml", "overrides": {},
            "input": [batch, 3, size, size]}


POINTS = [cn_point(1), cn_point(4), cn_point(16), ho_point("euler"), ho_point("rk4"), ho_point("verner89")]
SMOKE = [cn_point(1, size=8)]
STEADY = ("continuousnet-4-4-4", "continuousnet-16-16-16")


def step(model, x, y) -> float:
    """One forward+backward with cross-entropy; seconds."""
    t = time.perf_counter()
    loss = torch.nn.functional.cross_entropy(model(x), y)
    loss.backward()
    return time.perf_counter() - t


def _setup(point: dict) -> tuple:
    """The point's model (seed 0, 2 threads), an input batch and its labels."""
    import rkcompile

    torch.set_num_threads(2)
    torch.manual_seed(0)
    model = rkcompile.build(ROOT / point["spec"], point["overrides"])
    x = torch.randn(*point["input"])
    if point.get("channels_last"):  # weights and input in NHWC order (the network and its numbers are the same)
        model, x = model.to(memory_format=torch.channels_last), x.to(memory_format=torch.channels_last)
    return model, x, torch.randint(0, 10, (point["input"][0],))


def worker(point: dict, variant: str, backend: str, reps: int) -> dict:
    """Measure one point in this process: build, cold first step, steady-state steps."""
    from torch._dynamo.utils import counters

    import rkcompile
    from rkcompile.regional import RegionalModule

    model, x, y = _setup(point)
    reference = model(x).detach()
    model.zero_grad()
    regional = RegionalModule(model)
    if variant == "eager":
        run = model
    elif variant == "nested":
        for cls in regional.classes:
            cls.forward = torch.compiler.nested_compile_region(cls.forward)
        run = torch.compile(regional, backend=backend)
    else:
        run = rkcompile.compile(model, mode=variant, backend=backend)
    cold = step(run, x, y)
    times = []
    for _ in range(reps):
        model.zero_grad()
        times.append(step(run, x, y))
    diff = (run(x) - reference).abs().max().item()
    return {"point": point["name"], "variant": variant, "cold_s": cold, "step_ms": 1e3 * statistics.median(times),
            "step_ms_min": 1e3 * min(times), "max_abs_diff": diff, "graph_nodes": len(model.graph.nodes),
            "units": len(regional.instances), "structures": len(regional.classes),
            "compiled_regions": len(regional.block_classes), "dynamo_graphs": counters["stats"]["unique_graphs"],
            "input": point["input"]}


def steady(point: dict, backend: str, reps: int) -> dict:
    """Steady-state step times of eager, regional and full compile side by side in one process, steps interleaved.

    The three share one model (regional and full are compiled views of it), each is warmed up by its first step,
    then `reps` rounds run one step of each in turn, so drifts of the machine touch all three alike.
    """
    import rkcompile

    model, x, y = _setup(point)
    runs = {"eager": model, "regional": rkcompile.compile(model, mode="regional", backend=backend),
            "full": rkcompile.compile(model, mode="full", backend=backend)}
    cold = {name: step(run, x, y) for name, run in runs.items()}
    times: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(reps):
        for name, run in runs.items():
            model.zero_grad()
            times[name].append(1e3 * step(run, x, y))
    quartiles = {name: statistics.quantiles(t) for name, t in times.items()}
    stats = {name: {"median_ms": statistics.median(t), "q1_ms": quartiles[name][0], "q3_ms": quartiles[name][2],
                    "min_ms": min(t), "cold_s": cold[name]} for name, t in times.items()}
    return {"point": point["name"], "variant": "steady", "reps": reps, "input": point["input"],
            "channels_last": bool(point.get("channels_last")),
            "graph_nodes": len(model.graph.nodes), "times": stats,
            "regional_over_full": stats["regional"]["median_ms"] / stats["full"]["median_ms"],
            "regional_over_full_min": stats["regional"]["min_ms"] / stats["full"]["min_ms"],
            "regional_over_eager": stats["regional"]["median_ms"] / stats["eager"]["median_ms"]}


def steady_table(rows: list[dict]) -> str:
    """Markdown of `steady` rows: per point and variant, median (quartiles) and minimum, and the ratios."""
    lines = ["| network | input | graph nodes | variant | step median (ms) | quartiles (ms) | min (ms) | ×full (median) "
             "| ×full (min) |", "|---|---|---:|---|---:|---:|---:|---:|---:|"]
    for r in rows:
        full = r["times"]["full"]
        for name, t in r["times"].items():
            shape = "×".join(map(str, r["input"])) + (" channels-last" if r.get("channels_last") else "")
            lines.append(f"| {r['point']} | {shape} | {r['graph_nodes']:,} | {name} | {t['median_ms']:.1f} | "
                         f"{t['q1_ms']:.1f}–{t['q3_ms']:.1f} | {t['min_ms']:.1f} | "
                         f"{t['median_ms'] / full['median_ms']:.2f}x | {t['min_ms'] / full['min_ms']:.2f}x |")
    return "\n".join(lines) + "\n"


def measure(point: dict, variant: str, backend: str, reps: int, timeout: float | None = None) -> dict:
    """Run `worker` in a fresh process (its own process group) with a fresh inductor cache directory.

    Past `timeout` seconds the whole group (inductor's compile workers too) is killed and the row records
    `timed_out` with `cold_s` None and `cold_s_at_least` the seconds it ran.
    """
    with tempfile.TemporaryDirectory(prefix="rkcompile-inductor-") as cache:
        env = dict(os.environ, TORCHINDUCTOR_CACHE_DIR=cache, TRITON_CACHE_DIR=cache)
        args = json.dumps({"point": point, "variant": variant, "backend": backend, "reps": reps})
        start = time.perf_counter()
        child = subprocess.Popen([sys.executable, __file__, "--worker", args], env=env, stdout=subprocess.PIPE,
                                 stderr=subprocess.PIPE, text=True, start_new_session=True)
        try:
            stdout, stderr = child.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(child.pid, signal.SIGKILL)
            child.communicate()
            return {"point": point["name"], "variant": variant, "timed_out": True, "cold_s": None,
                    "cold_s_at_least": time.perf_counter() - start, "step_ms": None, "max_abs_diff": None,
                    "input": point["input"]}
    if child.returncode != 0:
        raise RuntimeError(f"{point['name']} {variant}: worker failed\n{stderr[-3000:]}")
    return json.loads(stdout.strip().splitlines()[-1])


def run(points: list[dict], variants: list[str], backend: str, reps: int, out: Path | None = None,
        timeout: float | None = None, previous: dict | None = None) -> dict:
    """Every point under every variant (variant by variant), one process each; machine facts and load averages.

    With `out`, the results so far are written after every point, so an interrupted run keeps what it measured.
    With `previous` (an earlier run's results), its rows stay unless this run measures the same point and variant;
    each row keeps the load average at its own start.
    """
    results = {"machine": _machine(backend), "rows": []}
    kept, measured = (list(previous["rows"]) if previous else []), []
    before = previous["machine"].get("total_s", 0) if previous else 0
    if previous:  # the earlier run's machine facts stay; the rerun rows carry their own load average
        results["machine"] = {**previous["machine"], "updated": 0}
    start = time.perf_counter()
    for variant in variants:
        for point in points:
            load = os.getloadavg()[0]
            row = measure(point, variant, backend, reps, timeout)
            row["load_average"] = load
            if row.get("timed_out"):
                print(f"{row['point']:<26} {variant:<9} stopped after {row['cold_s_at_least']:.0f} s", flush=True)
            else:
                print(f"{row['point']:<26} {variant:<9} cold {row['cold_s']:8.2f} s  step {row['step_ms']:8.2f} ms  "
                      f"diff {row['max_abs_diff']:.1e}", flush=True)
            kept = [r for r in kept if (r["point"], r["variant"]) != (row["point"], row["variant"])]
            measured.append(row)
            results["rows"] = _ordered(kept + measured) if previous else list(measured)
            results["machine"]["load_average_end"] = list(os.getloadavg())
            results["machine"]["total_s"] = before + time.perf_counter() - start
            if previous:
                results["machine"]["updated"] = len(measured)
            if out is not None:
                write(results, out)
    return results


def _machine(backend: str) -> dict:
    return {"platform": platform.platform(), "python": platform.python_version(), "torch": torch.__version__,
            "threads": 2, "backend": backend, "load_average_start": list(os.getloadavg())}


def _ordered(rows: list[dict]) -> list[dict]:
    """Rows variant by variant, then in the order of POINTS (unknown points last), as a full run writes them."""
    order = {p["name"]: i for i, p in enumerate(POINTS)}
    ranks = {v: i for i, v in enumerate(VARIANTS + CANDIDATES)}
    return sorted(rows, key=lambda r: (ranks.get(r["variant"], len(ranks)), order.get(r["point"], len(order))))


def write(results: dict, out: Path) -> None:
    """compile.json, compile.md and compile.png under `out`."""
    out.mkdir(parents=True, exist_ok=True)
    write_file(out / "compile.json", json.dumps(results, indent=2) + "\n")
    write_file(out / "compile.md", table(results))
    plot(results, out / "compile.png")


def table(results: dict) -> str:
    """The markdown table of a run, with ratios to full compile; a stopped point shows its lower bound (> s)."""
    rows = results["rows"]
    full = {r["point"]: r for r in rows if r["variant"] == "full"}
    shape = {r["point"]: r for r in rows if "graph_nodes" in r}  # graph facts from any finished variant
    m = results["machine"]
    lines = [f"{m['platform']}, Python {m['python']}, torch {m['torch']}, {m['threads']} threads, backend "
             f"{m['backend']}; load average {m['load_average_start'][0]:.2f} at the start, "
             f"{m['load_average_end'][0]:.2f} at the end; {m['total_s']:.0f} s in all"
             + (f" ({m['updated']} row{'s' if m['updated'] != 1 else ''} rerun by --update; each row's load average is in the JSON)."
                if m.get("updated") else "."), "",
             "| network | graph nodes | units / structures / compiled regions | variant | graphs compiled | cold start (s) | "
             "×full | step (ms) | ×full | max abs diff |", "|---|---:|---:|---|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        f, g = full.get(r["point"]), shape.get(r["point"])
        nodes = f"{g['graph_nodes']:,}" if g else "–"
        units = f"{g['units']} / {g['structures']} / {g['compiled_regions']}" if g else "–"
        step_ms = "–" if r["step_ms"] is None else f"{r['step_ms']:.1f}"
        diff = "–" if r["max_abs_diff"] is None else f"{r['max_abs_diff']:.1e}"
        graphs = r.get("dynamo_graphs", "–")
        lines.append(f"| {r['point']} | {nodes} | {units} | {r['variant']} | {graphs} | {_cold(r)} | {_ratio(r, f, 'cold_s')} | "
                     f"{step_ms} | {_ratio(r, f, 'step_ms')} | {diff} |")
    return "\n".join(lines + goals(rows)) + "\n"


def goals(rows: list[dict]) -> list[str]:
    """The issue's three goals, as far as this run measured them: regional cold start at 16-16-16 against its
    own at 1-1-1 (≤ 1.5x) and against full compile (≤ 0.25x), regional steady state against full (≤ 1.10x)."""
    row = {(r["point"], r["variant"]): r for r in rows}
    deep, shallow = row.get(("continuousnet-16-16-16", "regional")), row.get(("continuousnet-1-1-1", "regional"))
    full = row.get(("continuousnet-16-16-16", "full"))
    out = []
    if deep and shallow and not deep.get("timed_out") and not shallow.get("timed_out"):
        out.append(f"- regional cold start, 16-16-16 / 1-1-1: {deep['cold_s'] / shallow['cold_s']:.2f}x (goal ≤ 1.5x)")
    if deep and full and not deep.get("timed_out"):
        out.append(f"- regional / full cold start at 16-16-16: {_ratio(deep, full, 'cold_s')} (goal ≤ 0.25x)")
    for r in rows:
        f = row.get((r["point"], "full"))
        if r["variant"] == "regional" and f and r["step_ms"] is not None and f["step_ms"] is not None:
            out.append(f"- regional / full steady state, {r['point']}: {r['step_ms'] / f['step_ms']:.2f}x "
                       "(goal ≤ 1.10x)")
    return ["", "Goals:", *out] if out else []


def _cold(row: dict) -> str:
    return f"> {row['cold_s_at_least']:.0f} (stopped)" if row.get("timed_out") else f"{row['cold_s']:.2f}"


def _ratio(row: dict, full: dict | None, key: str) -> str:
    """row/full; against a stopped full compile the cold-start ratio is an upper bound ("<")."""
    if full is None or row[key] is None:
        return "–"
    if full.get("timed_out"):
        return f"< {row[key] / full['cold_s_at_least']:.2f}x" if key == "cold_s" else "–"
    return f"{row[key] / full[key]:.2f}x"


def plot(results: dict, path: Path) -> None:
    """Cold start and steady-state step time against graph nodes, one line per variant and family."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for family, marker in (("continuousnet", "o"), ("ho-resnet58", "s")):
        for variant in sorted({r["variant"] for r in results["rows"]}):
            rows = [r for r in results["rows"] if r["variant"] == variant and r["point"].startswith(family)
                    and not r.get("timed_out")]
            rows.sort(key=lambda r: r["graph_nodes"])
            if not rows:
                continue
            nodes = [r["graph_nodes"] for r in rows]
            axes[0].plot(nodes, [r["cold_s"] for r in rows], marker=marker, label=f"{family} {variant}")
            axes[1].plot(nodes, [r["step_ms"] for r in rows], marker=marker, label=f"{family} {variant}")
    axes[0].set(xlabel="graph nodes", ylabel="cold start: first forward+backward (s)", title="compile")
    axes[1].set(xlabel="graph nodes", ylabel="forward+backward (ms)", title="steady state", yscale="log")
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    import io

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=120)
    plt.close(fig)
    write_file(path, buffer.getvalue())


def main(argv: list[str] | None = None) -> int:
    """Command line: run the points, write compile.{json,md,png} under --out."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--smoke", action="store_true", help="One tiny point with the eager backend, seconds.")
    p.add_argument("--variants", default=",".join(VARIANTS), help="Comma-separated: eager, full, regional, nested.")
    p.add_argument("--points", default=None, help="Comma-separated point names, run in this order (default: all).")
    p.add_argument("--timeout", type=float, default=None, help="Stop a point after this many seconds and record "
                                                                "the lower bound (default: none).")
    p.add_argument("--out", default=None, help="Directory for the results (default benchmarks/results; none "
                                               "with --smoke unless given).")
    p.add_argument("--update", action="store_true", help="Keep the rows of --out's compile.json that this run does "
                                                         "not measure (rerun single points).")
    p.add_argument("--steady", action="store_true", help="Instead: steady-state step times of eager, regional and "
                                                         "full side by side in one process per point (default "
                                                         "points continuousnet-4-4-4,continuousnet-16-16-16), "
                                                         "written to compile-steady.{json,md} (with --input, compile-steady-BATCHxSIZE.*).")
    p.add_argument("--reps", type=int, default=None, help="Steady-state steps per variant (default 5; 40 with "
                                                         "--steady).")
    p.add_argument("--input", default=None, help="BATCH,SIZE: run the points at this batch and image size instead of "
                                                 "their own (2,16), e.g. --steady --input 32,32.")
    p.add_argument("--channels-last", action="store_true", help="Run the points with weights and input in "
                                                                 "channels-last memory format (files -cl).")
    p.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        job = json.loads(args.worker)
        run_job = steady if job["variant"] == "steady" else functools.partial(worker, variant=job["variant"])
        print(json.dumps(run_job(job["point"], backend=job["backend"], reps=job["reps"])))
        return 0
    variants = args.variants.split(",")
    unknown = [v for v in variants if v not in VARIANTS + CANDIDATES]
    if unknown:
        p.error(f"unknown variant {unknown[0]!r}; choose from {', '.join(VARIANTS + CANDIDATES)}")
    points = SMOKE if args.smoke else POINTS
    if args.points:
        by_name = {pt["name"]: pt for pt in points}
        unknown = [name for name in args.points.split(",") if name not in by_name]
        if unknown:
            p.error(f"unknown point {unknown[0]!r}; choose from {', '.join(by_name)}")
        points = [by_name[name] for name in args.points.split(",")]
    if args.input:
        try:
            batch, size = (int(v) for v in args.input.split(","))
        except ValueError:
            p.error(f"--input takes BATCH,SIZE (two integers), found {args.input!r}")
        if not (1 <= batch <= 4096 and 4 <= size <= 1024):
            p.error(f"--input {args.input}: batch must be 1–4096 and size 4–1024")
        points = [{**pt, "input": [batch, *pt["input"][1:2], size, size]} for pt in points]
    if args.channels_last:
        points = [{**pt, "channels_last": True} for pt in points]
    out = Path(args.out) if args.out else (None if args.smoke else ROOT / "benchmarks" / "results")
    backend = "eager" if args.smoke else "inductor"
    if args.steady:
        chosen = points if args.points or args.smoke else [pt for pt in points if pt["name"] in STEADY]
        rows = [measure(pt, "steady", backend, args.reps or (3 if args.smoke else 40), args.timeout) for pt in chosen]
        text = steady_table([r for r in rows if not r.get("timed_out")])
        if out is not None:  # another input gets files of its own: compile-steady-32x32.json is batch 32 at 32×32
            stem = ("compile-steady" + (f"-{points[0]['input'][0]}x{points[0]['input'][-1]}" if args.input else "")
                    + ("-cl" if args.channels_last else ""))
            out.mkdir(parents=True, exist_ok=True)
            write_file(out / f"{stem}.json", json.dumps({"machine": _machine(backend), "rows": rows}, indent=2) + "\n")
            write_file(out / f"{stem}.md", text)
        print(text)
        return 0
    previous = None
    if args.update:
        if out is None or not (out / "compile.json").is_file():
            p.error("--update needs an earlier compile.json under --out")
        previous = json.loads((out / "compile.json").read_text())
    results = run(points, variants, backend, args.reps or (2 if args.smoke else 5), out, args.timeout, previous)
    print(table(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
