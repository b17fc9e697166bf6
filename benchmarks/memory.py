"""HO-ResNet-58 memory table: parameters, inference peak, saved-for-backward and training peak per scheme.

Predicted from one run on meta tensors (fast, any batch); with --measure, also measured by one real CPU
forward and backward (slow at batch 128 on a few cores: --measure-batch picks a smaller batch). Ratios to
Euler sit next to the ones HO-ResNet reports (Luo et al. 2022, Table 2: Euler 1x, midpoint 1x, RK4 1.5x, Verner 7x).
Then: the inference peak under each step lowering (accumulate, minimal registers), and the memory-recompute
curve of the checkpoint planner per scheme for HO-ResNet-58 and ContinuousNet-32-32-32 (plotted), with
measured training steps at --measure-batch for three budgets per scheme when --measure is given. Last,
reversible backprop against ordinary backprop and the planner, and its float32 drift (`memory_reversible.py`).

    python benchmarks/memory.py [--batch 128] [--measure] [--measure-batch 16] [--points 8]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from rkcompile import build, tradeoff
from rkcompile.analysis import Report, analyze
from rkcompile.analysis.measure import measure_step
from rkcompile.analysis.report import human_bytes
from rkcompile.files import write_file

ROOT = Path(__file__).resolve().parents[1]
PAPER = {"euler": "1x", "midpoint": "1x", "rk4": "1.5x", "verner89": "7x"}  # HO-ResNet Table 2 memory ratios
CURVE_SCHEMES = ("euler", "rk4", "verner89")
# ContinuousNet-32-32-32: 32 basis pieces per stage; every scheme at the same 112 evaluations per stage
# (Euler 112 steps, RK4 28, Verner 8(9) 8), so that schemes compare at equal parameters and equal work
CONTINUOUSNET = {**{f"stages.{s}.weights.pieces": 32 for s in range(3)}, **{f"stages.{s}.steps": None for s in range(3)},
                 **{f"stages.{s}.evaluations": 112 for s in range(3)}}


def lowering_table(batch: int, measure_batch: int | None) -> tuple[str, dict]:
    """Markdown: each scheme's inference peak under both lowerings (and measured at `measure_batch`)."""
    lines = ["| scheme | accumulate | registers | auto picks | ×Euler (auto) | extra axpys per step "
             + ("| measured (auto, batch " + str(measure_batch) + ") " if measure_batch else "") + "|",
             "|---|---:|---:|---|---:|---:|" + ("---:|" if measure_batch else "")]
    data, euler = {}, None
    for name in PAPER:
        spec = ROOT / "specs" / f"ho-resnet58-{name}.yaml"
        peaks = {low: analyze(build(spec, {"stages.0.lowering": low}), batch=batch).total.inference_peak
                 for low in ("accumulate", "registers")}
        auto = build(spec)
        from rkcompile.lowering_registers import stage_lowering

        choice = stage_lowering(auto.spec.stages[0])
        euler = euler or peaks["accumulate"]
        row = {**peaks, "auto": choice.lowering, "extra_axpys": choice.extra_axpys}
        cells = [name, human_bytes(peaks["accumulate"]), human_bytes(peaks["registers"]), choice.lowering,
                 f"{peaks[choice.lowering] / euler:.3f}x", f"{choice.extra_axpys:+d}"]
        if measure_batch:
            r = analyze(auto, batch=measure_batch, measure=True)
            row["measured"] = [r.total.inference_peak, r.total.measured_inference_peak]
            cells.append(f"{human_bytes(r.total.inference_peak)} / {human_bytes(r.total.measured_inference_peak)}")
        data[name] = row
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines), data


def curves(batch: int, points: int) -> dict:
    """Memory-recompute curves: per network and scheme, (budget, predicted peak, recompute fraction, groups)."""
    nets = {"HO-ResNet-58": lambda s: build(ROOT / "specs" / f"ho-resnet58-{s}.yaml"),
            "ContinuousNet-32-32-32": lambda s: build(ROOT / "specs" / "continuousnet-8-8-8.yaml",
                                                      {**CONTINUOUSNET, **{f"stages.{i}.integrator": s
                                                                           for i in range(3)}})}
    out: dict = {}
    for net, make in nets.items():
        for scheme in CURVE_SCHEMES:
            plans = tradeoff(make(scheme), batch=batch, points=points)
            out.setdefault(net, {})[scheme] = [
                {"budget": p.budget, "training_peak": p.training_peak, "recompute": p.recompute_flops / p.flops,
                 "blocks": sum(b - a + 1 for _, a, b in p.groups), "groups": [list(g) for g in p.groups]}
                for p in plans]
    return out


def curve_table(data: dict) -> str:
    """Markdown: per network and scheme, the smallest peak and the recomputation needed for half the plain peak."""
    lines = ["| network | scheme | training peak, no checkpoint | smallest possible | recompute at the smallest "
             "| recompute for ≤ 50% of the plain peak |", "|---|---|---:|---:|---:|---:|"]
    for net, schemes in data.items():
        for scheme, pts in schemes.items():
            plain, low = pts[-1]["training_peak"], pts[0]
            half = [p["recompute"] for p in pts if p["training_peak"] <= plain / 2]
            lines.append(f"| {net} | {scheme} | {human_bytes(plain)} | {human_bytes(low['training_peak'])} "
                         f"| {low['recompute']:.0%} | {f'{min(half):.0%}' if half else 'not reached'} |")
    return "\n".join(lines)


def plot_curves(data: dict, path: Path) -> None:
    """Training peak against recomputed FLOPs (share of a forward pass), one panel per network."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(data), figsize=(11, 4), constrained_layout=True)
    for ax, (net, schemes) in zip(axes, data.items(), strict=True):
        for scheme, pts in schemes.items():
            ax.plot([100 * p["recompute"] for p in pts], [p["training_peak"] / 2**30 for p in pts], "o-", label=scheme)
        ax.set_title(f"{net}, batch {BATCH_NOTE[0]}")
        ax.set_xlabel("recomputed in backward (% of a forward pass's FLOPs)")
        ax.set_ylabel("predicted training peak (GiB)")
        ax.set_ylim(bottom=0)
        ax.grid(alpha=0.3)
        ax.legend()
    fig.savefig(path, dpi=120)
    plt.close(fig)


BATCH_NOTE = [128]


def measured_plans(batch: int) -> tuple[str, list]:
    """Plan three budgets per HO-ResNet-58 scheme at `batch` and measure the checkpointed training step."""
    from rkcompile import plan

    rows, lines = [], ["| scheme | budget | groups | predicted training peak | measured | measured / budget |",
                       "|---|---:|---|---:|---:|---:|"]
    for scheme in CURVE_SCHEMES:
        model = build(ROOT / "specs" / f"ho-resnet58-{scheme}.yaml")
        first = plan(model, 2**50, batch=batch)
        for fraction in (0.1, 0.5, 0.9):
            budget = int(first.minimum + fraction * (first.training_peak_without - first.minimum))
            chosen = plan(model, budget, batch=batch)
            measured = measure_step(build(model.spec, chosen.overrides()), batch)["training_peak"]
            groups = ", ".join(f"{a}-{b}" if a != b else f"{a}" for _, a, b in chosen.groups)
            rows.append({"scheme": scheme, "budget": budget, "groups": [list(g) for g in chosen.groups],
                         "predicted": chosen.training_peak, "measured": measured})
            lines.append(f"| {scheme} | {human_bytes(budget)} | {groups} | {human_bytes(chosen.training_peak)} "
                         f"| {human_bytes(measured)} | {measured / budget:.3f} |")
    return "\n".join(lines), rows


def _ratio(report: Report, field: str) -> str:
    return f"{report.total.relative[field]:.3f}x"


def predicted_table(reports: dict[str, Report]) -> str:
    """Markdown: predicted totals and ratios to Euler, beside HO-ResNet's reported ratio."""
    lines = ["| scheme | blocks | parameters | inference peak | saved for backward | training peak | GFLOP "
             "| inference ×Euler | saved ×Euler | training ×Euler | HO-ResNet Table 2 |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for name, r in reports.items():
        t = r.total
        blocks = sum(1 for u in r.units if ".block" in u.label)
        lines.append(f"| {name} | {blocks} | {t.parameters:,} | {human_bytes(t.inference_peak)} "
                     f"| {human_bytes(t.saved_bytes)} | {human_bytes(t.training_peak)} | {t.flops / 1e9:.1f} "
                     f"| {_ratio(r, 'inference_peak')} | {_ratio(r, 'saved_bytes')} | {_ratio(r, 'training_peak')} "
                     f"| {PAPER[name]} |")
    return "\n".join(lines)


def measured_table(reports: dict[str, Report]) -> str:
    """Markdown: predicted / measured totals and the worst per-unit relative error."""
    lines = ["| scheme | inference peak pred / meas | saved pred / meas | training peak pred / meas "
             "| worst unit error | measured training ×Euler |",
             "|---|---:|---:|---:|---:|---:|"]
    euler = reports["euler"].total.measured_training_peak
    for name, r in reports.items():
        t = r.total
        pairs = [(getattr(u, f), getattr(u, f"measured_{f}")) for u in r.rows
                 for f in ("inference_peak", "saved_bytes", "training_peak")]
        worst = max(abs(m - p) / p for p, m in pairs if p)
        cells = [f"{human_bytes(getattr(t, f))} / {human_bytes(getattr(t, f'measured_{f}'))}"
                 for f in ("inference_peak", "saved_bytes", "training_peak")]
        lines.append(f"| {name} | {' | '.join(cells)} | {worst:.2%} | {t.measured_training_peak / euler:.3f}x |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    """Print the tables and write benchmarks/results/memory.{json,md}."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=128, help="Batch size of the predictions.")
    parser.add_argument("--measure", action="store_true", help="Also run one real forward and backward on CPU.")
    parser.add_argument("--measure-batch", type=int, default=None, help="Batch of the measured run (default: --batch).")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results", help="Output folder.")
    parser.add_argument("--points", type=int, default=8, help="Budgets per memory-recompute curve.")
    args = parser.parse_args(argv)
    mbatch = args.measure_batch or args.batch
    predicted, measured, seconds = {}, {}, {}
    for name in PAPER:
        spec = ROOT / "specs" / f"ho-resnet58-{name}.yaml"
        start = time.perf_counter()
        predicted[name] = analyze(spec, batch=args.batch)
        seconds[f"{name}.predict"] = time.perf_counter() - start
        if args.measure:
            start = time.perf_counter()
            measured[name] = (analyze(spec, batch=mbatch, measure=True) if mbatch != args.batch
                              else analyze(spec, batch=args.batch, measure=True))
            seconds[f"{name}.measure"] = time.perf_counter() - start
            if mbatch == args.batch:
                predicted[name] = measured[name]
    text = [f"## HO-ResNet-58 (28 evaluations, 64 channels, 32×32, float32): predicted at batch {args.batch}",
            "", predicted_table(predicted)]
    if measured:
        text += ["", f"## Measured at batch {mbatch} (one CPU forward + backward) against the prediction at "
                 f"batch {mbatch}", "", measured_table(measured)]
    start = time.perf_counter()
    lowering, lowering_data = lowering_table(args.batch, mbatch if args.measure else None)
    seconds["lowering"] = time.perf_counter() - start
    text += ["", f"## Inference peak per step lowering, batch {args.batch}", "", lowering]
    start = time.perf_counter()
    BATCH_NOTE[0] = args.batch
    curve_data = curves(args.batch, args.points)
    seconds["curves"] = time.perf_counter() - start
    args.out.mkdir(parents=True, exist_ok=True)
    plot_curves(curve_data, args.out / "memory-recompute.png")
    text += ["", f"## Checkpoint planner: memory against recomputation, batch {args.batch}", "", curve_table(curve_data)]
    checked = []
    if args.measure:
        start = time.perf_counter()
        table, checked = measured_plans(mbatch)
        seconds["planned.measure"] = time.perf_counter() - start
        text += ["", f"## Planned checkpoints measured (one CPU training step, batch {mbatch})", "", table]
    start = time.perf_counter()
    from memory_reversible import run as reversible

    section, reversible_data = reversible(args.batch, mbatch if args.measure else None, args.points, args.out)
    seconds["reversible"] = time.perf_counter() - start
    text += ["", section.rstrip("\n")]
    markdown = "\n".join(text) + "\n"
    print(markdown)
    for report in predicted.values():
        print(report.table(), "\n")
    args.out.mkdir(parents=True, exist_ok=True)
    write_file(args.out / "memory.md", markdown)
    data = {"batch": args.batch, "measure_batch": mbatch if measured else None, "paper_ratio": PAPER,
            "seconds": seconds, "predicted": {k: v.to_dict() for k, v in predicted.items()},
            "measured": {k: v.to_dict() for k, v in measured.items()}, "lowerings": lowering_data,
            "curves": curve_data, "planned_measured": checked, "reversible": reversible_data}
    write_file(args.out / "memory.json", json.dumps(data, indent=1) + "\n")


if __name__ == "__main__":
    main()
