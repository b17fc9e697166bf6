"""Manifestation invariance (Queiruga et al. 2020 §5.3, Table 1, Fig. 9) on scikit-learn's 8x8 digits.

A small ContinuousNet-style conv net whose stages have basis weights (theta(t) piecewise constant on `pieces`
pieces of [0, 1], integrated with `steps` = pieces steps) is trained once with forward Euler and once with RK4
(Adam, a few epochs). Afterwards, without any further training, each model is re-manifested with
`rkcompile.transforms.remanifest` to other schemes (euler, midpoint, rk4, rk4-38) and step counts
(1, 2, 4, 8, 16 x pieces) and its test accuracy is measured. The paper's claim: RK4-trained models keep their
accuracy under re-manifestation, Euler-trained ones degrade.

Batch-norm running statistics are those gathered while training with the training scheme; the remanifested models
are evaluated in eval mode with them as they are (no re-calibration), which is what "no further training" means.

    .venv/bin/python experiments/manifestation.py [--smoke]
"""

from __future__ import annotations

import torch
from common import (
    Clock,
    datasets,
    evaluate,
    parse_args,
    pyplot,
    run_all,
    save_figure,
    tensors,
    train_classifier,
    write_json,
)

import rkcompile
from rkcompile.transforms import parameter_count, remanifest

TRAIN_SCHEMES = ("euler", "rk4")
EVAL_SCHEMES = ("euler", "midpoint", "rk4", "rk4-38")
COLORS = {"euler": "tab:red", "midpoint": "tab:orange", "rk4": "tab:blue", "rk4-38": "tab:green"}
MARKERS = {"euler": "o", "midpoint": "s", "rk4": "^", "rk4-38": "v"}

SPEC = """\
name: digits-continuousnet
seed: {seed}
input: {{channels: 1, height: 8, width: 8}}
stem: {{kind: conv, channels: {width}, kernel: 3}}
stages:
  - channels: {width}
    entry: {{kind: stitch, stride: 1}}
    module: &unit   # ContinuousNet's unit: conv3x3(+bias) -> ReLU -> BN -> conv3x3(+bias) -> ReLU -> BN
      kind: layers
      layers: [{{kind: conv, bias: true}}, relu, batchnorm, {{kind: conv, bias: true}}, relu, batchnorm]
    integrator: {scheme}
    steps: {pieces}
    weights: {{kind: basis, pieces: {pieces}}}
    step: {{T: 1}}
  - channels: {width2}
    entry: {{kind: stitch, stride: 2}}
    module: *unit
    integrator: {scheme}
    steps: {pieces}
    weights: {{kind: basis, pieces: {pieces}}}
    step: {{T: 1}}
output: {{classes: 10}}
"""


def network(scheme: str, pieces: int, width: int, seed: int):
    """Two basis stages (width, 2*width channels), `pieces` pieces integrated with `pieces` steps of `scheme`."""
    return rkcompile.build(rkcompile.parse_spec(SPEC.format(seed=seed, width=width, width2=2 * width, scheme=scheme,
                                                           pieces=pieces)))


def adam(lr: float):
    return lambda params: torch.optim.Adam(params, lr=lr)


def cosine(opt, steps):
    return torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)


def train_one(config: dict) -> dict:
    """Train with one scheme, then evaluate every (scheme, steps) re-manifestation of the trained weights."""
    torch.set_num_threads(1)
    digits = datasets().digits()
    train, test = tensors(digits.train), tensors(digits.test)
    if config["subset"]:
        train, test = tuple(t[:config["subset"]] for t in train), tuple(t[:config["subset"] // 2] for t in test)
    scheme, pieces, seed = config["scheme"], config["pieces"], config["seed"]
    model = network(scheme, pieces, config["width"], seed)
    run = train_classifier(model, train, test, config["epochs"], config["batch"], adam(config["lr"]), seed, cosine)
    evals = {}
    for target in EVAL_SCHEMES:
        accs, losses = [], []
        for mult in config["multipliers"]:
            new = remanifest(model, integrator=target, steps=mult * pieces)
            loss, acc = evaluate(new, *test)
            accs.append(acc)
            losses.append(loss if loss == loss and abs(loss) != float("inf") else None)
        evals[target] = {"test_acc": accs, "test_loss": losses}
    native = evals[scheme]["test_acc"][config["multipliers"].index(1)]
    print(f"trained {scheme:5s} seed {seed}: test acc {run['test_acc_final']:.4f} ({run['seconds']:.1f}s); "
          + "; ".join(f"{t}: " + " ".join(f"{a:.3f}" for a in evals[t]["test_acc"]) for t in EVAL_SCHEMES),
          flush=True)
    assert abs(native - run["test_acc_final"]) < 1e-9, "remanifest to the training manifestation changed the model"
    return {"train": scheme, "seed": seed, "parameters": parameter_count(model), "test_acc": run["test_acc_final"],
            "train_seconds": run["seconds"], "train_loss": run["train_loss"], "curve": run["test_acc"],
            "eval": evals}


def main() -> None:
    args = parse_args("manifestation", "Manifestation invariance (Queiruga et al. 2020 §5.3) on 8x8 digits.")
    clock = Clock()
    if args.smoke:
        width, pieces, epochs, seeds, multipliers, subset = 4, 2, 1, (0,), (1, 2), 200
    else:
        width, pieces, epochs, seeds, multipliers, subset = 16, 2, 30, (0, 1, 2), (1, 2, 4, 8, 16), None
    lr, batch = 3e-3, 64
    configs = [{"scheme": s, "seed": seed, "pieces": pieces, "width": width, "epochs": epochs, "batch": batch,
                "lr": lr, "multipliers": list(multipliers), "subset": subset} for s in TRAIN_SCHEMES for seed in seeds]
    runs = run_all(train_one, configs, args.jobs, lambda c: 4 if c["scheme"] == "rk4" else 1)
    steps = [m * pieces for m in multipliers]
    table = []
    for train_scheme in TRAIN_SCHEMES:
        mine = [r for r in runs if r["train"] == train_scheme]
        for target in EVAL_SCHEMES:
            for i, n in enumerate(steps):
                accs = [r["eval"][target]["test_acc"][i] for r in mine]
                losses = [r["eval"][target]["test_loss"][i] for r in mine]
                table.append({"train": train_scheme, "eval": target, "steps": n,
                              "native": target == train_scheme and n == pieces,
                              "test_acc_mean": sum(accs) / len(accs), "test_acc_runs": accs,
                              "test_loss_mean": None if None in losses else sum(losses) / len(losses),
                              "test_loss_runs": losses})
    results = {"width": width, "pieces": pieces, "train_steps": pieces, "epochs": epochs, "batch": batch, "lr": lr,
               "optimizer": "adam, cosine to 0", "seeds": list(seeds), "steps": steps,
               "train_size": subset or len(tensors(datasets().digits().train)[0]),
               "runs": runs, "table": table, "summary": _summary(table, pieces), "seconds": clock()}
    write_json(f"{args.out}/manifestation.json", results)
    _plot(results, f"{args.out}/manifestation.png")
    clock.log(f"wrote {args.out}/manifestation.json and manifestation.png")


def _summary(table: list[dict], pieces: int) -> list[dict]:
    """Per training scheme: native accuracy, and the worst / mean accuracy over every other manifestation."""
    out = []
    for train_scheme in TRAIN_SCHEMES:
        rows = [r for r in table if r["train"] == train_scheme]
        native = next(r for r in rows if r["native"])
        others = [r["test_acc_mean"] for r in rows if not r["native"]]
        losses = [r["test_loss_mean"] for r in rows if not r["native"] and r["test_loss_mean"] is not None]
        out.append({"train": train_scheme, "native_acc": native["test_acc_mean"], "worst_other_acc": min(others),
                    "mean_other_acc": sum(others) / len(others),
                    "largest_drop": native["test_acc_mean"] - min(others),
                    "native_loss": native["test_loss_mean"], "worst_other_loss": max(losses, default=None)})
    return out


def _plot(results: dict, path: str) -> None:
    plt = pyplot()
    fig, axes = plt.subplots(2, len(TRAIN_SCHEMES), figsize=(11, 7.6), sharey="row", sharex=True)
    for col, train_scheme in enumerate(TRAIN_SCHEMES):
        for target in EVAL_SCHEMES:
            rows = [r for r in results["table"] if r["train"] == train_scheme and r["eval"] == target]
            steps = [r["steps"] for r in rows]
            axes[0, col].semilogx(steps, [100 * r["test_acc_mean"] for r in rows], marker=MARKERS[target],
                                  color=COLORS[target], label=f"evaluated with {target}", base=2)
            axes[1, col].semilogx(steps, [r["test_loss_mean"] or float("nan") for r in rows], marker=MARKERS[target],
                                  color=COLORS[target], label=f"evaluated with {target}", base=2)
        axes[0, col].set_title(f"trained with {train_scheme} ({results['pieces']} steps, dashed)")
        axes[1, col].set_xlabel("steps per stage after re-manifestation")
        for ax in axes[:, col]:
            ax.axvline(results["pieces"], color="grey", lw=0.8, ls="--")
            ax.grid(True, alpha=0.3)
            ax.legend(fontsize=8)
    axes[0, 0].set_ylim(97, 100)
    axes[0, 0].set_ylabel(f"test accuracy (%), mean of {len(results['seeds'])} seeds")
    axes[1, 0].set_ylabel("test cross-entropy, mean of seeds")
    fig.suptitle(f"digits, ContinuousNet-style {results['width']}-{2 * results['width']} channels, "
                 f"{results['pieces']} basis pieces, {results['epochs']} epochs Adam")
    save_figure(fig, path)


if __name__ == "__main__":
    main()
