"""Multi-level training (Chang et al. 2018) on scikit-learn's 8x8 digits: 2-2-2 -> 4-4-4 -> 8-8-8 by interpolation.

A small ResNet (specs/resnet14-cifar10.yaml with overrides: 1x8x8 input, narrow channels, 10 classes; post-
activation basic blocks, transition entries with zero-padded shortcuts) is trained in three equal cycles:
2-2-2 blocks with h = 1, then `interpolate` (every block copied in after itself, h halved: 4-4-4 with h = 1/2),
then again (8-8-8, h = 1/4), with `rkcompile.training.Schedule` rebuilding SGD at each event (momentum state
carried) and restarting a cosine cycle (Chang et al. 2018, eq. 9). The baseline trains 8-8-8 from the start for the same
number of epochs with one cosine cycle. It is the standard ResNet (h = 1, the spec's default); the multi-level
model ends at h = 1/4 with the same parameter names and count. Measured: training wall time (interpolation
included, evaluation excluded) and test accuracy. Theory for equal cycles and cost proportional to depth:
(1 + 2 + 4) / (3 * 4) = 7/12 of the time, i.e. 42% saved; the paper reports ~40%.

With a transition entry a stage of B blocks becomes entry + 2B + 1 (see `interpolate`), so stages 1 and 2 go
entry + 1 -> entry + 3 -> entry + 7: 2, 4, 8 blocks in all, as in the paper's appendix B.

    .venv/bin/python experiments/multilevel.py [--smoke]
"""

from __future__ import annotations

import math
import time

import torch
import torch.nn.functional as F
from common import (
    ROOT,
    Clock,
    datasets,
    evaluate,
    parameters,
    parse_args,
    pyplot,
    run_all,
    save_figure,
    tensors,
    write_json,
)

import rkcompile
from rkcompile.training import Schedule, cosine

SPEC = ROOT / "specs" / "resnet14-cifar10.yaml"


def network(width: int, blocks: int, seed: int):
    """The ResNet with `blocks` blocks per stage (the first stage has no entry; the others count theirs)."""
    return rkcompile.build(SPEC, {"name": f"digits-resnet-{blocks}", "seed": seed,
                                  "input": {"channels": 1, "height": 8, "width": 8}, "stem.channels": width,
                                  "stages.0.channels": width, "stages.1.channels": 2 * width,
                                  "stages.2.channels": 4 * width, "stages.0.evaluations": blocks,
                                  "stages.1.evaluations": blocks - 1, "stages.2.evaluations": blocks - 1,
                                  "output.classes": 10})


def depth(model) -> str:
    """Blocks per stage, entries included, e.g. '2-2-2'."""
    return "-".join(str(st.blocks + (0 if type(st.entry).__name__ == "NoEntry" else 1)) for st in model.spec.stages)


def train_one(config: dict) -> dict:
    """One run: config {mode: multilevel|baseline, seed, width, epochs, batch, lr, subset} -> its record."""
    torch.set_num_threads(1)
    digits = datasets().digits()
    (x, y), test = tensors(digits.train), tensors(digits.test)
    if config["subset"]:
        x, y, test = x[:config["subset"]], y[:config["subset"]], tuple(t[:config["subset"] // 2] for t in test)
    seed, epochs, mode = config["seed"], config["epochs"], config["mode"]
    model = network(config["width"], 2 if mode == "multilevel" else 8, seed)
    cycle = epochs // 3
    at = {cycle: "interpolate", 2 * cycle: "interpolate"} if mode == "multilevel" else {}

    def sgd(m):
        return torch.optim.SGD(m.parameters(), lr=config["lr"], momentum=0.9, weight_decay=5e-4)

    schedule = Schedule(model, sgd, at=at, epochs=epochs, lr_scheduler=cosine())
    generator = torch.Generator().manual_seed(seed)
    record = {"mode": mode, "seed": seed, "epochs": [], "events": []}
    train_seconds = 0.0
    for epoch in range(epochs):
        start = time.perf_counter()
        model, opt = schedule.begin_epoch(epoch)
        model.train()
        total = 0.0
        for idx in torch.randperm(len(x), generator=generator).split(config["batch"]):
            loss = F.cross_entropy(model(x[idx]), y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += loss.item() * len(idx)
        lr = opt.param_groups[0]["lr"]
        schedule.end_epoch()
        seconds = time.perf_counter() - start
        train_seconds += seconds
        acc = evaluate(model, *test)[1]                       # not timed
        record["epochs"].append({"epoch": epoch, "depth": depth(model), "lr": lr, "train_loss": total / len(x),
                                 "test_acc": acc, "seconds": seconds, "train_seconds_so_far": train_seconds})
    record["events"] = [[e, label] for e, label in schedule.history]
    record.update(final_depth=depth(model), final_h=[str(st.h) for st in model.spec.stages],
                  parameters=parameters(model), train_seconds=train_seconds,
                  test_loss=evaluate(model, *test)[0], test_acc=evaluate(model, *test)[1])
    if not math.isfinite(record["test_loss"]):
        record["test_loss"] = None
    print(f"{mode:10s} seed {seed}: {record['final_depth']} h={record['final_h'][0]}, test acc "
          f"{record['test_acc']:.4f}, training {train_seconds:.1f}s", flush=True)
    return record


def main() -> None:
    args = parse_args("multilevel", "Multi-level training (Chang et al. 2018) on 8x8 digits.")
    clock = Clock()
    if args.smoke:
        width, epochs, seeds, subset = 4, 3, (0,), 200
    else:
        width, epochs, seeds, subset = 8, 45, (0, 1, 2, 3, 4), None
    lr, batch = 0.1, 64
    configs = [{"mode": mode, "seed": seed, "width": width, "epochs": epochs, "batch": batch, "lr": lr,
                "subset": subset} for mode in ("baseline", "multilevel") for seed in seeds]
    # interleaved so that each pair running side by side is one baseline and one multi-level run
    configs = [c for pair in zip(configs[:len(seeds)], configs[len(seeds):]) for c in pair]
    runs = run_all(train_one, configs, args.jobs)
    summary = {}
    for mode in ("baseline", "multilevel"):
        mine = [r for r in runs if r["mode"] == mode]
        summary[mode] = {"final_depth": mine[0]["final_depth"], "parameters": mine[0]["parameters"],
                         "train_seconds_mean": sum(r["train_seconds"] for r in mine) / len(mine),
                         "train_seconds_runs": [r["train_seconds"] for r in mine],
                         "test_acc_mean": sum(r["test_acc"] for r in mine) / len(mine),
                         "test_acc_runs": [r["test_acc"] for r in mine]}
    base, multi = summary["baseline"], summary["multilevel"]
    # per-epoch cost by depth (median over the multi-level runs), to compare with the 1:2:4 of theory
    per_depth = {}
    for r in runs:
        for e in r["epochs"][1:]:                             # the first epoch includes warm-up
            per_depth.setdefault(e["depth"] if r["mode"] == "multilevel" else "8-8-8 (baseline)", []).append(
                e["seconds"])
    per_depth = {k: sorted(v)[len(v) // 2] for k, v in per_depth.items()}
    results = {"width": width, "epochs": epochs, "cycle_epochs": epochs // 3, "batch": batch, "lr": lr,
               "optimizer": "SGD momentum 0.9, wd 5e-4, cosine per cycle", "seeds": list(seeds),
               "train_size": subset or 1437, "runs": runs, "summary": summary,
               "time_saved": 1 - multi["train_seconds_mean"] / base["train_seconds_mean"],
               "time_saved_runs": [1 - m / b for m, b in zip(multi["train_seconds_runs"], base["train_seconds_runs"])],
               "time_saved_theory": 1 - 7 / 12, "epoch_seconds_median": per_depth,
               "accuracy_difference": multi["test_acc_mean"] - base["test_acc_mean"], "seconds": clock()}
    write_json(f"{args.out}/multilevel.json", results)
    _plot(results, f"{args.out}/multilevel.png")
    clock.log(f"time saved {100 * results['time_saved']:.1f}% (theory 41.7%); test acc multilevel "
              f"{multi['test_acc_mean']:.4f} vs baseline {base['test_acc_mean']:.4f}")
    clock.log(f"wrote {args.out}/multilevel.json and multilevel.png")


def _plot(results: dict, path: str) -> None:
    plt = pyplot()
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 4.4))
    colors = {"baseline": "tab:red", "multilevel": "tab:blue"}
    for r in results["runs"]:
        label = f"{r['mode']} seed {r['seed']}"
        t = [e["train_seconds_so_far"] for e in r["epochs"]]
        acc = [100 * e["test_acc"] for e in r["epochs"]]
        ax1.plot(range(1, len(acc) + 1), acc, color=colors[r["mode"]], alpha=0.7, label=label)
        ax2.plot(t, acc, color=colors[r["mode"]], alpha=0.7, label=label)
    for k in (1, 2):
        ax1.axvline(k * results["cycle_epochs"] + 0.5, color="grey", lw=0.8, ls="--")
    ax1.set_xlabel("epoch (dashed: interpolations 2-2-2 -> 4-4-4 -> 8-8-8)")
    ax2.set_xlabel("training wall time (s, one thread)")
    for ax in (ax1, ax2):
        ax.set_ylabel("test accuracy (%)")
        ax.set_ylim(80, 100)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=7)
    s = results["summary"]
    ax2.set_title(f"time saved {100 * results['time_saved']:.0f}% (theory 42%); acc "
                  f"{100 * s['multilevel']['test_acc_mean']:.1f}% vs {100 * s['baseline']['test_acc_mean']:.1f}%")
    ax1.set_title(f"digits, ResNet {results['width']}-{2 * results['width']}-{4 * results['width']} channels, "
                  f"{results['epochs']} epochs")
    save_figure(fig, path)


if __name__ == "__main__":
    main()
