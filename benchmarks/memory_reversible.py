"""Reversible backprop against ordinary backprop and the checkpoint planner: memory against depth, float32 drift.

HO-ResNet-58's F (conv3x3-BN-ReLU-conv3x3-BN, 64 channels, 32×32, `after: none`) integrated by momentum
(Sander et al. 2021, γ = 0.9) at several depths: predicted saved-for-backward and training peak at --batch for
ordinary and reversible backprop, and the smallest training peak the checkpoint planner reaches for the same F
integrated by Euler (the planner checkpoints Runge–Kutta blocks only); measured at
--measure-batch with --measure (reversible only). Then the planner's memory-recompute curve at 28 blocks with the reversible point,
and the float32 drift: gradients of reversible and ordinary backprop in float32 against ordinary backprop in
float64, on a narrower copy (8 channels, 8×8, batch 4) at growing depth, for momentum, leapfrog, second order.

    python benchmarks/memory_reversible.py [--batch 128] [--measure] [--measure-batch 8]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from rkcompile import build, tradeoff
from rkcompile.analysis import predict
from rkcompile.analysis.checkpoint import checkpoint_costs
from rkcompile.analysis.measure import measure_step
from rkcompile.analysis.report import human_bytes
from rkcompile.files import write_file

ROOT = Path(__file__).resolve().parents[1]
SPEC = ROOT / "specs" / "ho-resnet58-euler.yaml"
DEPTHS = (8, 16, 28, 64)
DRIFT_DEPTHS = (8, 32, 128)
METHODS = ("momentum", "leapfrog", "second-order")
NARROW = {"input.height": 8, "input.width": 8, "stem.channels": 8, "stages.0.channels": 8}


def network(blocks: int, backprop: str, integrator: str = "momentum", **extra):
    """HO-ResNet-58's F at `blocks` method steps (leapfrog: one start-up midpoint step more evaluation)."""
    evaluations = blocks + 1 if integrator == "leapfrog" else blocks
    return build(SPEC, {"stages.0.integrator": integrator, "stages.0.evaluations": evaluations,
                        "stages.0.backprop": backprop, **extra})


def costs(blocks: int, batch: int, integrator: str = "momentum"):
    """Predicted costs of ordinary and of reversible backprop from one meta run of the ordinary network."""
    plain = predict(network(blocks, "saved", integrator), batch)
    return checkpoint_costs(plain, []), checkpoint_costs(plain, [], [0]), sum(
        n.meta["cost"]["flops"] for n in plain.graph.nodes if "cost" in n.meta)


def depth_rows(batch: int, measure_batch: int | None) -> list[dict]:
    """Per depth: predicted (and measured) saved and training peak, ordinary, reversible, planner's smallest (Euler)."""
    rows = []
    for blocks in DEPTHS:
        ordinary, reversible, flops = costs(blocks, batch)
        row: dict = {"blocks": blocks, "flops": flops,
                     "saved": {"saved": ordinary.saved_bytes, "training_peak": ordinary.training_peak},
                     "reversible": {"saved": reversible.saved_bytes, "training_peak": reversible.training_peak,
                                    "recompute": sum(reversible.recompute_flops.values()) / flops}}
        if measure_batch:
            _, predicted, _ = costs(blocks, measure_batch)
            m = measure_step(network(blocks, "reversible"), measure_batch)
            row["reversible"]["measured"] = {"batch": measure_batch, "saved": [predicted.saved_bytes, m["saved_bytes"]],
                                             "training_peak": [predicted.training_peak, m["training_peak"]]}
        smallest = tradeoff(network(blocks, "saved", "euler"), batch=batch, points=2)[0]
        row["planner_at_minimum"] = {"training_peak": smallest.training_peak,
                                     "recompute": smallest.recompute_flops / smallest.flops}
        rows.append(row)
    return rows


def depth_table(rows: list[dict], batch: int) -> str:
    """Markdown of `depth_rows`."""
    lines = ["| blocks | saved, ordinary | saved, reversible | training peak, ordinary | training peak, reversible "
             "| planner's smallest peak, Euler (recompute) | reversible recompute | measured reversible saved / training "
             "(pred / meas) |", "|---:|---:|---:|---:|---:|---:|---:|---|"]
    for r in rows:
        o, v = r["saved"], r["reversible"]
        measured = "–"
        if "measured" in v:
            m = v["measured"]
            measured = (f"b{m['batch']}: {human_bytes(m['saved'][0])} / {human_bytes(m['saved'][1])}; "
                        f"{human_bytes(m['training_peak'][0])} / {human_bytes(m['training_peak'][1])}")
        lines.append(f"| {r['blocks']} | {human_bytes(o['saved'])} | {human_bytes(v['saved'])} "
                     f"| {human_bytes(o['training_peak'])} | {human_bytes(v['training_peak'])} "
                     f"| {human_bytes(r['planner_at_minimum']['training_peak'])} "
                     f"({r['planner_at_minimum']['recompute']:.0%}) | {v['recompute']:.0%} "
                     f"| {measured} |")
    return "\n".join(lines)


def curve(batch: int, blocks: int, points: int) -> dict:
    """The planner's memory-recompute curve for the same F by Euler at `blocks`, and the reversible momentum point."""
    plans = tradeoff(network(blocks, "saved", "euler"), batch=batch, points=points)
    _, reversible, flops = costs(blocks, batch)
    return {"blocks": blocks, "planner": [{"training_peak": p.training_peak, "recompute": p.recompute_flops / p.flops}
                                          for p in plans],
            "reversible": {"training_peak": reversible.training_peak,
                           "recompute": sum(reversible.recompute_flops.values()) / flops}}


def _gradients(model, x: torch.Tensor) -> torch.Tensor:
    x = x.clone().requires_grad_()
    model.zero_grad()
    out = model(x)
    (out * torch.linspace(-1, 1, out.shape[-1], dtype=out.dtype)).sum().backward()
    return torch.cat([x.grad.flatten(), *(p.grad.flatten() for p in model.parameters())]).double()


def drift() -> list[dict]:
    """Relative error of all gradients (input and parameters) against ordinary backprop in float64."""
    rows = []
    x = torch.randn(4, 3, 8, 8, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    for method in METHODS:
        for blocks in DRIFT_DEPTHS:
            ordinary = network(blocks, "saved", method, **NARROW)
            reversible = network(blocks, "reversible", method, **NARROW)
            reversible.load_state_dict(ordinary.state_dict())
            row = {"method": method, "blocks": blocks}
            reference = None
            for dtype in (torch.float64, torch.float32):
                for name, model in (("saved", ordinary), ("reversible", reversible)):
                    state = {k: v.clone() for k, v in model.state_dict().items()}
                    g = _gradients(model.to(dtype).train(), x.to(dtype))
                    model.load_state_dict(state)  # one step's running statistics, not several
                    if reference is None:
                        reference = g
                        continue
                    row[f"{name}-{str(dtype)[6:]}"] = ((g - reference).norm() / reference.norm()).item()
            rows.append(row)
    return rows


def drift_table(rows: list[dict]) -> str:
    """Markdown of `drift`."""
    lines = ["| method | blocks | reversible, float64 | ordinary, float32 | reversible, float32 |",
             "|---|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['method']} | {r['blocks']} | {r['reversible-float64']:.1e} | {r['saved-float32']:.1e} "
                     f"| {r['reversible-float32']:.1e} |")
    return "\n".join(lines)


def plot(rows: list[dict], curve_data: dict, path: Path, batch: int) -> None:
    """Training peak against depth, and the memory-recompute curve with the reversible point."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4), constrained_layout=True)
    blocks = [r["blocks"] for r in rows]
    for label, values in (("ordinary backprop", [r["saved"]["training_peak"] for r in rows]),
                          ("checkpoint planner (Euler), smallest", [r["planner_at_minimum"]["training_peak"] for r in rows]),
                          ("reversible backprop", [r["reversible"]["training_peak"] for r in rows])):
        left.plot(blocks, [v / 2**30 for v in values], "o-", label=label)
    left.set_title(f"momentum ResNet (HO-ResNet-58's F), batch {batch}")
    left.set_xlabel("blocks")
    left.set_ylabel("predicted training peak (GiB)")
    left.set_ylim(bottom=0)
    pts = curve_data["planner"]
    right.plot([100 * p["recompute"] for p in pts], [p["training_peak"] / 2**30 for p in pts], "o-",
               label="checkpoint planner (Euler)")
    rev = curve_data["reversible"]
    right.plot([100 * rev["recompute"]], [rev["training_peak"] / 2**30], "s", markersize=9, label="reversible")
    right.set_title(f"{curve_data['blocks']} blocks, batch {batch}")
    right.set_xlabel("recomputed in backward (% of a forward pass's FLOPs)")
    right.set_ylabel("predicted training peak (GiB)")
    right.set_ylim(bottom=0)
    for ax in (left, right):
        ax.grid(alpha=0.3)
        ax.legend()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def run(batch: int, measure_batch: int | None, points: int, out: Path) -> tuple[str, dict]:
    """All of it: the markdown section and its data; writes the plot."""
    rows = depth_rows(batch, measure_batch)
    curve_data = curve(batch, 28, points)
    drift_rows = drift()
    out.mkdir(parents=True, exist_ok=True)
    plot(rows, curve_data, out / "memory-reversible.png", batch)
    rev = curve_data["reversible"]
    text = [f"## Reversible backprop: momentum (γ = 0.9) on HO-ResNet-58's F, predicted at batch {batch}", "",
            depth_table(rows, batch), "",
            f"At 28 blocks reversible backprop peaks at {human_bytes(rev['training_peak'])} for "
            f"{rev['recompute']:.0%} recomputation; the planner's curve there, for the same F by Euler (the planner "
            "checkpoints Runge–Kutta blocks only: a momentum block hands its velocity on as well): "
            + ", ".join(f"{human_bytes(p['training_peak'])} ({p['recompute']:.0%})" for p in curve_data["planner"]),
            "", "## Float32 drift: relative error of all gradients against ordinary backprop in float64 "
            "(8 channels, 8×8, batch 4)", "", drift_table(drift_rows)]
    return "\n".join(text) + "\n", {"depths": rows, "curve": curve_data, "drift": drift_rows}


def main(argv: list[str] | None = None) -> None:
    """Print the section and write benchmarks/results/memory-reversible.{md,json,png}."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=128, help="Batch size of the predictions.")
    parser.add_argument("--measure", action="store_true", help="Also measure one CPU training step per depth.")
    parser.add_argument("--measure-batch", type=int, default=8, help="Batch of the measured runs.")
    parser.add_argument("--points", type=int, default=8, help="Budgets on the planner's curve.")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results", help="Output folder.")
    args = parser.parse_args(argv)
    text, data = run(args.batch, args.measure_batch if args.measure else None, args.points, args.out)
    print(text)
    write_file(args.out / "memory-reversible.md", text)
    write_file(args.out / "memory-reversible.json", json.dumps(data, indent=1) + "\n")


if __name__ == "__main__":
    main()
