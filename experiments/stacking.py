"""Higher-order stacking (Luo et al. 2022, HO-ResNet) on scikit-learn's 8x8 digits: same parameters, different wiring.

A budget of E evaluations of F = conv3x3-BN-ReLU-conv3x3-BN (each with its own weights) is stacked as E Euler
blocks, E/2 midpoint blocks, E/4 RK4 blocks or E/14 Verner 8(9) blocks (specs/ho-resnet58-*.yaml with overrides:
1x8x8 input, narrow width). Measured: test accuracy at several depths, the loss of the untrained network (the
first thing SGD sees, Luo et al. 2022 Fig. 8), and the largest learning rate at which each scheme still trains (Fig. 9).

    .venv/bin/python experiments/stacking.py [--smoke]
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from common import (
    ROOT,
    Clock,
    datasets,
    parameters,
    parse_args,
    pyplot,
    run_all,
    save_figure,
    tensors,
    train_classifier,
    write_json,
)

import rkcompile

SPEC = ROOT / "specs" / "ho-resnet58-euler.yaml"
SCHEMES = ("euler", "midpoint", "rk4", "verner89")
COLORS = {"euler": "tab:red", "midpoint": "tab:orange", "rk4": "tab:blue", "verner89": "tab:green"}
TRAINS = 0.5  # "still trains": finite loss throughout and test accuracy at least this (chance is 0.1)


def network(scheme: str, evaluations: int, width: int, seed: int) -> torch.fx.GraphModule:
    """HO-ResNet's spec on 1x8x8 digits: a conv stem to `width` channels, E evaluations of F stacked by `scheme`."""
    return rkcompile.build(SPEC, {"name": f"digits-{scheme}-{evaluations}", "seed": seed,
                                  "input": {"channels": 1, "height": 8, "width": 8}, "stem.channels": width,
                                  "stages.0.channels": width, "stages.0.integrator": scheme,
                                  "stages.0.evaluations": evaluations})


def fits(scheme: str, evaluations: int) -> bool:
    """Whether the budget divides into blocks of the scheme's evaluations."""
    return evaluations % rkcompile.get_tableau(scheme).pruned().stages == 0


@torch.no_grad()
def initial_loss(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> float | None:
    """Cross-entropy of the untrained network on the training set with batch statistics (what SGD's first step sees)."""
    model.train()
    loss = F.cross_entropy(model(x), y).item()
    return loss if math.isfinite(loss) else None


def sgd(lr: float):
    """SGD with momentum 0.9 and weight decay 5e-4 (HO-ResNet's optimizer)."""
    return lambda params: torch.optim.SGD(params, lr=lr, momentum=0.9, weight_decay=5e-4)


def cosine(opt, steps):
    """Per-step cosine decay to zero."""
    return torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)


def train_one(config: dict) -> dict:
    """One training run: {scheme, evaluations, width, seed, lr, epochs, cosine, subset} -> its record."""
    digits = datasets().digits()
    train, test = tensors(digits.train), tensors(digits.test)
    if config["subset"]:
        train, test = tuple(t[:config["subset"]] for t in train), tuple(t[:config["subset"] // 2] for t in test)
    scheme, evaluations, seed = config["scheme"], config["evaluations"], config["seed"]
    model = network(scheme, evaluations, config["width"], seed)
    start_loss = initial_loss(model, *train)
    run = train_classifier(model, train, test, config["epochs"], config["batch"], sgd(config["lr"]), seed,
                           cosine if config["cosine"] else None)
    print(f"{config['kind']:8s} E={evaluations:2d} {scheme:8s} seed {seed} lr {config['lr']:<5g}: initial loss "
          f"{start_loss if start_loss is None else round(start_loss, 3)}, test acc {run['test_acc_final']:.4f}"
          f"{' (diverged)' if run['diverged'] else ''} ({run['seconds']:.1f}s)", flush=True)
    return {"scheme": scheme, "evaluations": evaluations, "seed": seed, "lr": config["lr"],
            "blocks": model.spec.stages[0].blocks, "parameters": parameters(model), "initial_loss": start_loss,
            "test_acc": run["test_acc_final"], "diverged": run["diverged"],
            "trains": not run["diverged"] and run["test_acc_final"] >= TRAINS, "seconds": run["seconds"],
            "train_loss": run["train_loss"], "curve": run["test_acc"]}


def main() -> None:
    """Accuracy vs depth per scheme, and a learning-rate sweep at the deepest budget; JSON and plots."""
    args = parse_args("stacking", "Higher-order stacking (Luo et al. 2022) on 8x8 digits.")
    clock = Clock()
    if args.smoke:
        width, budgets, seeds, epochs, sweep_epochs, lrs, subset = 4, (4, 28), (0,), 1, 1, (0.1, 3.2), 200
    else:
        width, budgets, seeds, epochs, sweep_epochs, lrs, subset = 8, (4, 12, 28), (0, 1), 10, 8, (
            0.1, 0.2, 0.3, 0.4, 0.6, 0.8, 1.6), None
    base_lr, batch = 0.1, 64
    common = {"width": width, "batch": batch, "subset": subset}
    accuracy = [dict(common, kind="accuracy", scheme=s, evaluations=e, seed=seed, lr=base_lr, epochs=epochs,
                     cosine=True) for e in budgets for s in SCHEMES if fits(s, e) for seed in seeds]
    sweep = [dict(common, kind="sweep", scheme=s, evaluations=budgets[-1], seed=seed, lr=lr, epochs=sweep_epochs,
                  cosine=False) for s in SCHEMES if fits(s, budgets[-1]) for lr in lrs for seed in seeds]
    runs = run_all(train_one, accuracy + sweep, args.jobs, lambda c: c["evaluations"] * c["epochs"])
    results = {"width": width, "budgets": list(budgets), "seeds": list(seeds), "epochs": epochs, "batch": batch,
               "lr": base_lr, "train_size": subset or 1437, "accuracy": runs[:len(accuracy)],
               "sweep": {"evaluations": budgets[-1], "epochs": sweep_epochs, "lrs": list(lrs), "threshold": TRAINS,
                         "runs": runs[len(accuracy):]}}
    for evaluations in budgets:
        counts = {r["parameters"] for r in results["accuracy"] if r["evaluations"] == evaluations}
        assert len(counts) == 1, f"parameter counts differ across schemes at E={evaluations}: {counts}"
    results["table"] = _table(results)
    results["seconds"] = clock()
    write_json(f"{args.out}/stacking.json", results)
    _plot(results, f"{args.out}/stacking.png")
    clock.log(f"wrote {args.out}/stacking.json and stacking.png")


def _table(results: dict) -> list[dict]:
    """Per scheme and budget: mean test accuracy over seeds, initial loss, and the largest LR that trains."""
    rows = []
    sweep = results["sweep"]
    for evaluations in results["budgets"]:
        for scheme in SCHEMES:
            runs = [r for r in results["accuracy"] if r["scheme"] == scheme and r["evaluations"] == evaluations]
            if not runs:
                continue
            row = {"scheme": scheme, "evaluations": evaluations, "blocks": runs[0]["blocks"],
                   "parameters": runs[0]["parameters"],
                   "test_acc_mean": sum(r["test_acc"] for r in runs) / len(runs),
                   "test_acc_runs": [r["test_acc"] for r in runs],
                   "initial_loss": [r["initial_loss"] for r in runs]}
            if evaluations == sweep["evaluations"]:
                mine = [r for r in sweep["runs"] if r["scheme"] == scheme]
                every = [lr for lr in sweep["lrs"] if all(r["trains"] for r in mine if r["lr"] == lr)]
                row["largest_lr_that_trains"] = max(every) if every else None        # every seed trains
                row["largest_lr_any_seed"] = max((r["lr"] for r in mine if r["trains"]), default=None)
            rows.append(row)
    return rows


def _plot(results: dict, path: str) -> None:
    plt = pyplot()
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 4.4))
    for scheme in SCHEMES:
        rows = [r for r in results["table"] if r["scheme"] == scheme]
        if rows:
            shift = 0.3 * (SCHEMES.index(scheme) - 1.5)  # side by side, so that equal values stay visible
            mean = [100 * r["test_acc_mean"] for r in rows]
            spread = [[m - 100 * min(r["test_acc_runs"]) for m, r in zip(mean, rows)],
                      [100 * max(r["test_acc_runs"]) - m for m, r in zip(mean, rows)]]
            ax1.errorbar([r["evaluations"] + shift for r in rows], mean, yerr=spread, fmt="o-", capsize=3,
                         color=COLORS[scheme], label=scheme)
        runs = [r for r in results["sweep"]["runs"] if r["scheme"] == scheme]
        if runs:
            lrs = results["sweep"]["lrs"]
            mean = [100 * sum(r["test_acc"] for r in runs if r["lr"] == lr) / len([r for r in runs if r["lr"] == lr])
                    for lr in lrs]
            ax2.semilogx(lrs, mean, "o-", color=COLORS[scheme], label=f"{scheme} (mean of seeds)")
            ax2.semilogx([r["lr"] for r in runs], [100 * r["test_acc"] for r in runs], ".", color=COLORS[scheme],
                         alpha=0.5)
    ax1.set_xlabel("evaluations of F (equal parameters per budget)")
    ax1.set_ylabel("test accuracy (%), bars: min-max of seeds")
    ax1.set_ylim(95, 100)
    ax1.set_title(f"digits, width {results['width']}, {results['epochs']} epochs, mean of {len(results['seeds'])} seeds")
    ax2.axhline(100 * results["sweep"]["threshold"], color="grey", lw=0.8, ls="--")
    ax2.set_xlabel("learning rate (SGD, momentum 0.9, constant)")
    ax2.set_ylabel("test accuracy (%)")
    ax2.set_title(f"E = {results['sweep']['evaluations']}, {results['sweep']['epochs']} epochs; dashed: 'trains'")
    for ax in (ax1, ax2):
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8)
    save_figure(fig, path)


if __name__ == "__main__":
    main()
