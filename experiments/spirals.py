"""Spirals (Feldhausen and Vallbo): plain feed-forward vs ResNet vs Runge-Kutta networks (Euler, Heun, RK4) at depths 5 ... 50.

Width 8, batch norm after each layer, tanh, Adam with batch 32, residual parameter dt = h = 1 (Feldhausen and Vallbo, Sec. 4).
A network of depth N has N hidden layers of F(y) = tanh(BN(W y + b)), so every model has the same parameters:
- plain: y <- F(y), written by hand (no residual structure, so not an rkcompile spec);
- resnet: y <- tanh(y + BN(W y + b)), He et al.'s order (activation after the addition): Euler with `after: tanh`
  (Feldhausen and Vallbo writes its ResNet as y + f(y), which is the `euler` model here);
- euler, heun, rk4: one Runge-Kutta step per layer, its stages sharing that layer's weights, as in Feldhausen and Vallbo's
  u^[i]: basis weights with one piece per step (specs/spirals-rk4.yaml with overrides).

    .venv/bin/python experiments/spirals.py [--smoke]
"""

from __future__ import annotations

import torch
from common import (
    ROOT,
    Clock,
    datasets,
    parameters,
    parse_args,
    pyplot,
    run_all,
    save_figure,
    train_classifier,
    write_json,
)
from torch import nn

import rkcompile

SPEC = ROOT / "specs" / "spirals-rk4.yaml"
MODELS = ("plain", "resnet", "euler", "heun", "rk4")
COLORS = {"plain": "tab:purple", "resnet": "tab:red", "euler": "tab:blue", "heun": "goldenrod", "rk4": "tab:cyan"}
WIDTH = 8


def network(kind: str, depth: int, seed: int) -> nn.Module:
    """The model `kind` with `depth` hidden layers of width 8."""
    if kind == "plain":
        torch.manual_seed(seed)
        layers = [nn.Linear(2, WIDTH), nn.BatchNorm1d(WIDTH), nn.Tanh()]
        for _ in range(depth):
            layers += [nn.Linear(WIDTH, WIDTH), nn.BatchNorm1d(WIDTH), nn.Tanh()]
        return nn.Sequential(*layers, nn.Linear(WIDTH, 2))
    if kind == "resnet":
        return rkcompile.build(SPEC, {"seed": seed, "stages.0.integrator": "euler", "stages.0.evaluations": depth,
                                      "stages.0.module": {"kind": "layers", "layers": ["linear", "batchnorm"],
                                                          "after": "tanh"}})
    return rkcompile.build(SPEC, {"seed": seed, "stages.0.integrator": kind, "stages.0.evaluations": None,
                                  "stages.0.steps": depth, "stages.0.weights": {"kind": "basis", "pieces": depth}})


def train_one(config: dict) -> dict:
    """Train one (model, depth, seed) and return its record."""
    data = datasets()
    n, epochs = config["n"], config["epochs"]
    train, test = data.spirals(n, seed=0), data.spirals(n, seed=10_000)
    kind, depth, seed = config["model"], config["depth"], config["seed"]
    model = network(kind, depth, seed)
    run = train_classifier(model, train, test, epochs, 32, lambda p: torch.optim.Adam(p, lr=1e-2), seed)
    print(f"depth {depth:2d} {kind:6s} seed {seed}: test acc {run['test_acc_final']:.3f} ({run['seconds']:.1f}s)",
          flush=True)
    return {"model": kind, "depth": depth, "seed": seed, "parameters": parameters(model),
            "evaluations": _evaluations(model, depth), "test_acc": run["test_acc_final"],
            "test_acc_last5": sum(run["test_acc"][-5:]) / max(1, len(run["test_acc"][-5:])),
            "best_test_acc": max(run["test_acc"], default=0.0), "diverged": run["diverged"],
            "seconds": run["seconds"], "seconds_per_epoch": run["seconds"] / epochs, "curve": run["test_acc"]}


def main() -> None:
    """Train every model at every depth; write the accuracy table, curves at the largest depth, and plots."""
    args = parse_args("spirals", "Plain vs ResNet vs Runge-Kutta networks on 2-D spirals (Feldhausen and Vallbo).")
    clock = Clock()
    if args.smoke:
        depths, epochs, seeds, n = (2, 5), 2, (0,), 200
    else:
        depths, epochs, seeds, n = (5, 10, 20, 30, 50), 40, (0, 1), 1000
    results = {"width": WIDTH, "depths": list(depths), "epochs": epochs, "batch": 32, "optimizer": "adam, lr 0.01",
               "train_size": n, "test_size": n, "seeds": list(seeds)}
    configs = [{"model": k, "depth": d, "seed": s, "n": n, "epochs": epochs} for d in depths for k in MODELS
               for s in seeds]
    cost = {"plain": 1, "resnet": 1, "euler": 1, "heun": 2, "rk4": 4}
    results["runs"] = run_all(train_one, configs, args.jobs, lambda c: c["depth"] * cost[c["model"]])
    for depth in depths:
        counts = {r["parameters"] for r in results["runs"] if r["depth"] == depth}
        assert len(counts) == 1, f"parameter counts differ at depth {depth}: {counts}"
    results["table"] = _table(results)
    results["seconds"] = clock()
    write_json(f"{args.out}/spirals.json", results)
    _plot(results, datasets().spirals(n, seed=0), f"{args.out}/spirals.png")
    clock.log(f"wrote {args.out}/spirals.json and spirals.png")


def _evaluations(model: nn.Module, depth: int) -> int:
    spec = getattr(model, "spec", None)
    return depth if spec is None else spec.stages[0].total_evaluations


def _table(results: dict) -> list[dict]:
    """Per (model, depth), means over seeds: final test accuracy, and its mean over the last 5 epochs (less noisy)."""
    rows = []
    for kind in MODELS:
        for depth in results["depths"]:
            runs = [r for r in results["runs"] if r["model"] == kind and r["depth"] == depth]
            rows.append({"model": kind, "depth": depth, "parameters": runs[0]["parameters"],
                         "evaluations": runs[0]["evaluations"],
                         "test_acc": sum(r["test_acc"] for r in runs) / len(runs),
                         "test_acc_last5": sum(r["test_acc_last5"] for r in runs) / len(runs),
                         "seconds_per_epoch": sum(r["seconds_per_epoch"] for r in runs) / len(runs)})
    return rows


def _plot(results: dict, train: tuple, path: str) -> None:
    plt = pyplot()
    fig, axes = plt.subplots(1, 4, figsize=(19, 4.3))
    x, y = train
    axes[0].scatter(x[:, 0], x[:, 1], c=y, cmap="coolwarm", s=4)
    axes[0].set_title(f"training data ({len(y)} points)")
    axes[0].set_aspect("equal")
    deepest = results["depths"][-1]
    for k, kind in enumerate(MODELS):
        rows = [r for r in results["table"] if r["model"] == kind]
        axes[1].plot([r["depth"] for r in rows], [100 * r["test_acc_last5"] for r in rows], "o-", color=COLORS[kind],
                     label=f"{kind}: mean (line), seeds (dots)")
        runs = [r for r in results["runs"] if r["model"] == kind]
        shift = 0.4 * (k - 2)                                     # side by side, so that seeds do not overlap
        axes[1].plot([r["depth"] + shift for r in runs], [100 * r["test_acc_last5"] for r in runs], ".",
                     color=COLORS[kind], alpha=0.6, ms=6)
        bad = [r for r in runs if r["diverged"]]
        axes[1].plot([r["depth"] + shift for r in bad], [100 * r["test_acc_last5"] for r in bad], "x",
                     color=COLORS[kind], ms=9, mew=2)
        curves = [r["curve"] for r in runs if r["depth"] == deepest]
        for i, curve in enumerate(curves):
            axes[2].plot(range(1, len(curve) + 1), [100 * a for a in curve], color=COLORS[kind],
                         label=kind if i == 0 else None, alpha=0.8, lw=1)
        axes[3].bar(kind, next(r["seconds_per_epoch"] for r in rows if r["depth"] == deepest), color=COLORS[kind])
    axes[1].set_xticks(results["depths"], [str(d) for d in results["depths"]])
    axes[1].set_xlabel("depth N (hidden layers; x: diverged)")
    axes[1].set_ylabel("test accuracy (%), mean of the last 5 epochs")
    axes[1].set_title(f"{results['epochs']} epochs, {len(results['seeds'])} seeds")
    axes[2].set_xlabel("epoch")
    axes[2].set_ylabel("test accuracy (%)")
    axes[2].set_title(f"depth {deepest}, every seed")
    axes[3].set_ylabel("seconds per epoch (CPU, 1 thread)")
    axes[3].set_title(f"training time, depth {deepest}")
    for ax in axes[1:3]:
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8)
    save_figure(fig, path)


if __name__ == "__main__":
    main()
