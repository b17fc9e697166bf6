"""Speed benchmarks: compile time, forward+backward time per batch, draw time, measured in one run.

Every timing is repeated with the variants interleaved (their order rotated each repetition) and reported as
the median with its interquartile range and min/max; a ratio is the median of the per-repetition ratios, so
load from other processes hits both sides of a ratio alike. Outputs are checked against the hand-written
reference with the same weights before anything is timed, so every row does the same work.

    python benchmarks/speed.py [--quick] [--out benchmarks/results]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import torch

import rkcompile
from rkcompile.files import write_file

sys.path.insert(0, str(Path(__file__).resolve().parent))
from handwritten import ContinuousNet, HOResNet, ODENet, copy_weights, count_parameters  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
HAS_TORCHDIFFEQ = importlib.util.find_spec("torchdiffeq") is not None  # optional: pip install torchdiffeq
ODE_SPEC = """name: odenet-rk4-38
seed: 0
input: {{channels: 3, height: {size}, width: {size}}}
stem: {{kind: conv, channels: {channels}, kernel: 3}}
stages:
  - channels: {channels}
    module: {{kind: basic, form: post, after: none}}
    integrator: rk4-38
    steps: {steps}
    weights: shared
    step: {{T: 1}}
output: {{classes: 10}}
"""


@dataclass(frozen=True)
class Config:
    """Sizes of one benchmark run."""

    threads: int = 2
    build_reps: int = 15  # compile-time repetitions
    train_reps: int = 25  # forward+backward repetitions per variant
    batch: int = 8
    ho_evaluations: int = 28  # HO-ResNet-58: 28 evaluations = 7 RK4 blocks, 64 channels
    ho_size: int = 16  # input height = width (the spec's 32 reduced so 2 cores finish in minutes)
    cn_units: int = 8  # ContinuousNet n-n-n: steps = pieces = n, RK4
    cn_size: int = 32
    largest: int = 32  # compile and draw time: ContinuousNet with this many steps and pieces per stage
    ode_channels: int = 32
    ode_steps: int = 8  # a power of two, so torchdiffeq's step_size grid has exactly this many steps
    ode_size: int = 32
    backend: str = "inductor"  # torch.compile backend ("eager" in --quick: the dynamo path without C++ builds)
    compiled: tuple = ("ho-resnet58-rk4", "odenet-rk4-38")  # networks also timed under torch.compile
    draw_reps: int = 3


QUICK = Config(threads=1, build_reps=3, train_reps=3, batch=2, ho_evaluations=4, ho_size=8, cn_units=2, cn_size=8,
               largest=2, ode_channels=4, ode_steps=2, ode_size=8, backend="eager", draw_reps=1)


def summary(times: list[float]) -> dict:
    """Median, quartiles, min and max of a sample."""
    q1, med, q3 = statistics.quantiles(times, n=4, method="inclusive") if len(times) > 1 else times * 3
    return {"median": med, "q1": q1, "q3": q3, "min": min(times), "max": max(times), "n": len(times)}


def interleaved(variants: dict, reps: int) -> dict[str, list[float]]:
    """Time each zero-argument callable once per repetition, rotating their order; seconds per call."""
    names, times = list(variants), {name: [] for name in variants}
    for r in range(reps):
        for name in names[r % len(names):] + names[:r % len(names)]:
            start = time.perf_counter()
            variants[name]()
            times[name].append(time.perf_counter() - start)
    return times


def ratios(times: dict[str, list[float]], reference: str) -> dict:
    """Per-repetition ratio to `reference`, summarised."""
    return {name: summary([a / b for a, b in zip(t, times[reference])]) for name, t in times.items()}


def largest_overrides(n: int) -> dict:
    """ContinuousNet n-n-n: n RK4 steps and n basis pieces in each of the three stages."""
    return {**{f"stages.{s}.steps": n for s in range(3)},
            **{f"stages.{s}.weights": {"kind": "basis", "pieces": n} for s in range(3)}}


def compile_time(cfg: Config) -> dict:
    """rkcompile.build of the largest spec against constructing the hand-written ContinuousNet."""
    spec, overrides = ROOT / "specs" / "continuousnet-8-8-8.yaml", largest_overrides(cfg.largest)
    model, hand = rkcompile.build(spec, overrides), ContinuousNet(steps=cfg.largest, pieces=cfg.largest)
    if count_parameters(model) != count_parameters(hand):
        raise RuntimeError(f"parameters: compiled {count_parameters(model):,}, hand-written {count_parameters(hand):,}")
    validated = rkcompile.load_spec(spec, overrides)
    times = interleaved({"rkcompile.build(YAML file)": lambda: rkcompile.build(spec, overrides),
                         "of which load_spec (parse, validate)": lambda: rkcompile.load_spec(spec, overrides),
                         "rkcompile.build(validated Spec)": lambda: rkcompile.build(validated),
                         "hand-written nn.Module": lambda: ContinuousNet(steps=cfg.largest, pieces=cfg.largest)},
                        cfg.build_reps)
    return {"network": f"continuousnet-{cfg.largest}-{cfg.largest}-{cfg.largest} (rk4)",
            "parameters": count_parameters(model), "graph_nodes": len(model.graph.nodes),
            "times": {k: summary(v) for k, v in times.items()}, "ratio": ratios(times, "hand-written nn.Module")}


def networks(cfg: Config) -> list[tuple[str, dict, torch.Tensor]]:
    """(name, {variant: module}, input) for each timed network; every module holds the compiled model's weights."""
    ho = rkcompile.build(ROOT / "specs" / "ho-resnet58-rk4.yaml", {"stages.0.evaluations": cfg.ho_evaluations,
                         "input.height": cfg.ho_size, "input.width": cfg.ho_size})
    n = cfg.cn_units
    cn = rkcompile.build(ROOT / "specs" / "continuousnet-8-8-8.yaml", largest_overrides(n))
    ode = rkcompile.build(rkcompile.parse_spec(ODE_SPEC.format(size=cfg.ode_size, channels=cfg.ode_channels,
                                                              steps=cfg.ode_steps)))
    solver = {"torchdiffeq odeint(rk4)": ODENet(cfg.ode_channels, cfg.ode_steps, solver="torchdiffeq")} \
        if HAS_TORCHDIFFEQ else {}
    out = [(f"ho-resnet58-rk4 ({cfg.ho_evaluations} evaluations)", ho, HOResNet(cfg.ho_evaluations), cfg.ho_size, {}),
           (f"continuousnet-{n}-{n}-{n} (rk4)", cn, ContinuousNet(steps=n, pieces=n), cfg.cn_size, {}),
           (f"odenet-rk4-38 (shared, {cfg.ode_steps} steps)", ode, ODENet(cfg.ode_channels, cfg.ode_steps),
            cfg.ode_size, solver)]
    result = []
    for name, model, hand, size, extra in out:
        variants = {"rkcompile": model, "hand-written": hand, **extra}
        for module in list(variants.values())[1:]:
            if count_parameters(module) != count_parameters(model):
                raise RuntimeError(f"{name}: parameter counts differ")
            copy_weights(model, module)
        if model.spec.name in cfg.compiled:
            variants[f"rkcompile + torch.compile({cfg.backend})"] = torch.compile(model, backend=cfg.backend)
        result.append((name, variants, torch.randn(cfg.batch, 3, size, size)))
    return result


def train_step(module: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """One forward and backward pass (cross-entropy), gradients cleared first; returns the logits."""
    module.zero_grad(set_to_none=True)
    logits = module(x)
    torch.nn.functional.cross_entropy(logits, y).backward()
    return logits


def train_time(cfg: Config) -> list[dict]:
    """Forward+backward per batch for every variant of every network, after checking that outputs agree."""
    rows = []
    for name, variants, x in networks(cfg):
        y = torch.randint(0, 10, (x.shape[0],))
        first, logits = {}, {}
        for variant, module in variants.items():
            module.train()
            start = time.perf_counter()
            logits[variant] = train_step(module, x, y).detach()  # for torch.compile: the compilation
            first[variant] = time.perf_counter() - start
            train_step(module, x, y)  # warm-up
        reference = logits["hand-written"]
        diff = {v: (out - reference).abs().max().item() for v, out in logits.items()}
        worst = max(diff.values())
        if worst > 1e-4 * (1 + reference.abs().max().item()):
            raise RuntimeError(f"{name}: outputs differ from the hand-written module's by {worst:.3g}")
        times = interleaved({v: (lambda m=m, x=x, y=y: train_step(m, x, y)) for v, m in variants.items()}, cfg.train_reps)
        rows.append({"network": name, "input": list(x.shape), "parameters": count_parameters(variants["rkcompile"]),
                     "max_abs_diff_vs_hand_written": diff, "first_call": first,
                     "times": {k: summary(v) for k, v in times.items()}, "ratio": ratios(times, "hand-written")})
    return rows


def draw_time(cfg: Config) -> dict:
    """to_dot and a full svg render of the largest spec at the network and block levels, if rkcompile.render works."""
    try:
        from rkcompile.render import draw, to_dot
        from rkcompile.render.metrics import measure

        model = rkcompile.build(ROOT / "specs" / "continuousnet-8-8-8.yaml", largest_overrides(cfg.largest))
        with tempfile.TemporaryDirectory() as tmp:
            net, block = Path(tmp) / "network.svg", Path(tmp) / "block.svg"
            times = interleaved({"to_dot(level=network)": lambda: to_dot(model, level="network"),
                                 "of which the analysis (render.metrics.measure)": lambda: measure(model, batch=1),
                                 "draw(svg, level=network)": lambda: draw(model, net, level="network"),
                                 "to_dot(level=block)": lambda: to_dot(model, level="block"),
                                 "draw(svg, level=block)": lambda: draw(model, block, level="block")}, cfg.draw_reps)
            sizes = {"network": net.stat().st_size, "block": block.stat().st_size}
    except Exception as error:  # noqa: BLE001 - the renderer is optional here; report why it was skipped
        return {"skipped": f"{type(error).__name__}: {error}"}
    return {"network": f"continuousnet-{cfg.largest}-{cfg.largest}-{cfg.largest} (rk4)", "svg_bytes": sizes,
            "times": {k: summary(v) for k, v in times.items()}}


def machine(cfg: Config) -> dict:
    """What the numbers were measured on."""
    try:
        from importlib.metadata import version

        tde = version("torchdiffeq")
    except Exception:  # noqa: BLE001
        tde = None
    return {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
            "cpu_count": os.cpu_count(), "torch_threads": cfg.threads, "torch": torch.__version__,
            "torchdiffeq": tde, "python": platform.python_version(), "load_average": list(os.getloadavg())}


def _ms(s: dict) -> str:
    return f"{s['median'] * 1e3:,.1f} [{s['q1'] * 1e3:,.1f}–{s['q3'] * 1e3:,.1f}]"


def _x(s: dict) -> str:
    return f"{s['median']:.2f}x [{s['q1']:.2f}–{s['q3']:.2f}]"


def _first(row: dict, variant: str) -> str:
    return f"{row['first_call'][variant]:.1f}" if "torch.compile" in variant else "–"


def markdown(results: dict) -> str:
    """The results as markdown tables: median [interquartile range]; ratios are medians of paired ratios."""
    m, c = results["machine"], results["compile"]
    lines = [f"Measured in one run on {m['cpu_count']} CPU cores ({m['processor']}), torch {m['torch']} with "
             f"`torch.set_num_threads({m['torch_threads']})`, load average {m['load_average'][0]:.1f} at the start and "
             f"{m['load_average_end'][0]:.1f} at the end (shared machine); "
             "median [interquartile range], ratios are medians of per-repetition ratios.", "",
             f"**Compile time** — {c['network']}, {c['parameters']:,} parameters, {c['graph_nodes']:,} graph nodes "
             f"({c['times']['hand-written nn.Module']['n']} repetitions)", "",
             "| what | ms | ×hand-written |", "|---|---:|---:|"]
    for k, s in c["times"].items():
        lines.append(f"| {k} | {_ms(s)} | {_x(c['ratio'][k])} |")
    lines += ["", "**Forward+backward per batch** (train mode, cross-entropy; outputs checked against the "
              "hand-written module with the same weights)", "",
              "| network | input | variant | ms / batch | ×hand-written | max abs diff | compile: first call (s) |",
              "|---|---|---|---:|---:|---:|---:|"]
    for row in results["train"]:
        for k, s in row["times"].items():
            shape = "×".join(map(str, row["input"]))
            lines.append(f"| {row['network']} | {shape} | {k} | {_ms(s)} | {_x(row['ratio'][k])} "
                         f"| {row['max_abs_diff_vs_hand_written'][k]:.1e} | {_first(row, k)} |")
    if not HAS_TORCHDIFFEQ:
        lines += ["", "torchdiffeq is not installed (`pip install torchdiffeq`): its row was skipped."]
    d = results["draw"]
    lines += ["", "**Draw time**", ""]
    if "skipped" in d:
        lines.append(f"skipped: {d['skipped']}")
    else:
        sizes = ", ".join(f"{v:,} bytes at the {k} level" for k, v in d["svg_bytes"].items())
        lines += [f"{d['network']} ({d['times']['to_dot(level=network)']['n']} repetitions; svg: {sizes})", "",
                  "| what | ms |", "|---|---:|"]
        lines += [f"| {k} | {_ms(s)} |" for k, s in d["times"].items()]
    lines += ["", f"The whole run took {results['wall_seconds']:.0f} s."]
    return "\n".join(lines) + "\n"


def run(cfg: Config) -> dict:
    """Every benchmark, in one process, at the sizes of `cfg`."""
    torch.set_num_threads(cfg.threads)
    torch.manual_seed(0)
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="rkcompile-bench-") as cache:
        before = os.environ.get("TORCHINDUCTOR_CACHE_DIR")
        os.environ["TORCHINDUCTOR_CACHE_DIR"] = cache  # cold: the torch.compile time a first run costs
        try:
            results = {"machine": machine(cfg), "config": asdict(cfg), "compile": compile_time(cfg),
                       "train": train_time(cfg), "draw": draw_time(cfg)}
        finally:
            os.environ.pop("TORCHINDUCTOR_CACHE_DIR")
            if before is not None:
                os.environ["TORCHINDUCTOR_CACHE_DIR"] = before
    results["machine"]["load_average_end"] = list(os.getloadavg())
    results["wall_seconds"] = time.perf_counter() - start
    return results


def main(argv: list[str] | None = None) -> dict:
    """Run, print the markdown and write speed.json and speed.md (a --quick run writes only with --out)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="Tiny sizes and few repetitions (a smoke test).")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default 2).")
    parser.add_argument("--out", type=Path, default=None, help="Output folder (default benchmarks/results).")
    args = parser.parse_args(argv)
    cfg = QUICK if args.quick else Config()
    if args.threads:
        cfg = replace(cfg, threads=args.threads)
    results = run(cfg)
    text = markdown(results)
    print(text)
    out = args.out or (None if args.quick else ROOT / "benchmarks" / "results")
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        write_file(out / "speed.json", json.dumps(results, indent=2) + "\n")
        write_file(out / "speed.md", text)
    return results


if __name__ == "__main__":
    main()
