"""HO-ResNet-58 memory table: parameters, inference peak, saved-for-backward and training peak per scheme.

Predicted from one run on meta tensors (fast, any batch); with --measure, also measured by one real CPU
forward and backward (slow at batch 128 on a few cores: --measure-batch picks a smaller batch). Ratios to
Euler sit next to the ones HO-ResNet reports (Luo et al. 2022, Table 2: Euler 1x, midpoint 1x, RK4 1.5x, Verner 7x).

    python benchmarks/memory.py [--batch 128] [--measure] [--measure-batch 16]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from rkcompile.analysis import Report, analyze
from rkcompile.analysis.report import human_bytes
from rkcompile.files import write_file

ROOT = Path(__file__).resolve().parents[1]
PAPER = {"euler": "1x", "midpoint": "1x", "rk4": "1.5x", "verner89": "7x"}  # HO-ResNet Table 2 memory ratios


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
    markdown = "\n".join(text) + "\n"
    print(markdown)
    for report in predicted.values():
        print(report.table(), "\n")
    args.out.mkdir(parents=True, exist_ok=True)
    write_file(args.out / "memory.md", markdown)
    data = {"batch": args.batch, "measure_batch": mbatch if measured else None, "paper_ratio": PAPER,
            "seconds": seconds, "predicted": {k: v.to_dict() for k, v in predicted.items()},
            "measured": {k: v.to_dict() for k, v in measured.items()}}
    write_file(args.out / "memory.json", json.dumps(data, indent=1) + "\n")


if __name__ == "__main__":
    main()
