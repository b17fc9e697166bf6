"""Multi-level training (Chang et al. 2018) on scikit-learn's 8x8 digits: 2-2-2 -> 4-4-4 -> 8-8-8 by interpolation.

A small ResNet (specs/resnet14-cifar10.yaml with overrides: 1x8x8 input, narrow channels, 10 classes; post-
activation basic blocks, transition entries with zero-padded shortcuts) is trained in three equal cycles:
2-2-2 blocks with h = 1, then `interpolate` (every block copied in after itself, h halved: 4-4-4 with h = 1/2),
then again (8-8-8, h = 1/4), with `rkcompile.training.Schedule` rebuilding SGD at each event (momentum state
carried) and restarting a cosine cycle (Chang et al. 2018, eq. 9). Two baselines train 8-8-8 from the start for
the same number of epochs with one cosine cycle: the standard ResNet (h = 1, the paper's baseline) and the same
network at the multi-level model's final h = 1/4 (same parameter names and count). Each of the three gets its own
learning rate and warm-up, chosen on a validation split carved from the training set (never the test set).
Measured: training time as process CPU time and as wall time (interpolation included, evaluation excluded) and
test accuracy, 5 seeds, paired per seed. Theory for equal cycles and cost proportional to depth:
(1 + 2 + 4) / (3 * 4) = 7/12 of the time, i.e. 42% saved; the paper reports ~40%.

With a transition entry a stage of B blocks becomes entry + 2B + 1 (see `interpolate`), so stages 1 and 2 go
entry + 1 -> entry + 3 -> entry + 7: 2, 4, 8 blocks in all, as in the paper's appendix B.

    .venv/bin/python experiments/multilevel.py [--smoke] [--jobs 2]
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable

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
from stats import fmt_ci, mean_ci, min_detectable_difference, paired

import rkcompile
from rkcompile.training import Schedule, cosine

SPEC = ROOT / "specs" / "resnet14-cifar10.yaml"


def network(width: int, blocks: int, seed: int, h: float = 1):
    """The ResNet with `blocks` blocks per stage (the first stage has no entry; the others count theirs), step h."""
    steps = {f"stages.{n}.step": {"h": h} for n in range(3)} if h != 1 else {}
    return rkcompile.build(SPEC, {"name": f"digits-resnet-{blocks}", "seed": seed, **steps,
                                  "input": {"channels": 1, "height": 8, "width": 8}, "stem.channels": width,
                                  "stages.0.channels": width, "stages.1.channels": 2 * width,
                                  "stages.2.channels": 4 * width, "stages.0.evaluations": blocks,
                                  "stages.1.evaluations": blocks - 1, "stages.2.evaluations": blocks - 1,
                                  "output.classes": 10})


def depth(model) -> str:
    """Blocks per stage, entries included, e.g. '2-2-2'."""
    return "-".join(str(st.blocks + (0 if type(st.entry).__name__ == "NoEntry" else 1)) for st in model.spec.stages)


MODES = ("baseline", "baseline-h4", "multilevel")
LABELS = {"baseline": "8-8-8 from the start, h = 1", "baseline-h4": "8-8-8 from the start, h = 1/4",
          "multilevel": "2-2-2 -> 4-4-4 -> 8-8-8 (ends at h = 1/4)"}
COLORS = {"baseline": "tab:red", "baseline-h4": "tab:purple", "multilevel": "tab:blue"}
VALIDATION = 0.2     # fraction of the training set held out to choose lr and warm-up
TUNING_SEED = 100    # the seed of the tuning runs (not one of the evaluation seeds)


def split(subset: int | None, validation: bool) -> tuple[tuple, tuple]:
    """(train, evaluation) tensors: the training set minus a fixed validation split and that split, or train and test."""
    digits = datasets().digits()
    (x, y), test = tensors(digits.train), tensors(digits.test)
    if validation:
        order = torch.randperm(len(x), generator=torch.Generator().manual_seed(1234))
        cut = len(x) - round(VALIDATION * len(x))
        (x, y), test = (x[order[:cut]], y[order[:cut]]), (x[order[cut:]], y[order[cut:]])
    if subset:
        x, y, test = x[:subset], y[:subset], tuple(t[:subset // 2] for t in test)
    return (x, y), test


def warmup_cosine(warmup: int) -> Callable:
    """A cycle factory: linear warm-up over `warmup` epochs (first cycle only), then cosine to 0 (Chang et al. 2018, eq. 9)."""
    calls = []

    def make(optimizer: torch.optim.Optimizer, cycle_epochs: int | None):
        first, calls[:] = not calls, [1]
        if not first or warmup == 0:
            return cosine()(optimizer, cycle_epochs)
        length = max(1, (cycle_epochs or 1) - warmup)

        def factor(epoch: int) -> float:
            if epoch < warmup:
                return (epoch + 1) / (warmup + 1)
            return 0.5 * (1 + math.cos(math.pi * (epoch - warmup) / length))

        return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)

    return make


def train_one(config: dict) -> dict:
    """One run: config {mode, seed, width, epochs, batch, lr, warmup, validation, subset} -> its record."""
    torch.set_num_threads(1)
    (x, y), test = split(config["subset"], config["validation"])
    seed, epochs, mode = config["seed"], config["epochs"], config["mode"]
    model = network(config["width"], 2 if mode == "multilevel" else 8, seed, 0.25 if mode == "baseline-h4" else 1)
    cycle = epochs // 3
    at = {cycle: "interpolate", 2 * cycle: "interpolate"} if mode == "multilevel" else {}

    def sgd(m):
        return torch.optim.SGD(m.parameters(), lr=config["lr"], momentum=0.9, weight_decay=5e-4)

    schedule = Schedule(model, sgd, at=at, epochs=epochs, lr_scheduler=warmup_cosine(config["warmup"]))
    generator = torch.Generator().manual_seed(seed)
    record = {key: config[key] for key in ("mode", "seed", "lr", "warmup", "validation")}
    record.update(epochs=[], events=[])
    wall = cpu = 0.0
    diverged = False
    for epoch in range(epochs):
        start, start_cpu = time.perf_counter(), time.process_time()
        model, opt = schedule.begin_epoch(epoch)
        model.train()
        total = 0.0
        for idx in torch.randperm(len(x), generator=generator).split(config["batch"]):
            loss = F.cross_entropy(model(x[idx]), y[idx])
            if not torch.isfinite(loss):
                diverged = True
                break
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += loss.item() * len(idx)
        lr = opt.param_groups[0]["lr"]
        schedule.end_epoch()
        seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - start_cpu
        wall, cpu = wall + seconds, cpu + cpu_seconds
        if diverged:
            break
        acc = evaluate(model, *test)[1]                       # not timed
        record["epochs"].append({"epoch": epoch, "depth": depth(model), "lr": lr, "train_loss": total / len(x),
                                 "eval_acc": acc, "seconds": seconds, "cpu_seconds": cpu_seconds,
                                 "train_seconds_so_far": wall, "train_cpu_seconds_so_far": cpu})
    loss, acc = evaluate(model, *test)
    record.update(events=[[e, label] for e, label in schedule.history], final_depth=depth(model),
                  final_h=[str(st.h) for st in model.spec.stages], parameters=parameters(model),
                  train_seconds=wall, train_cpu_seconds=cpu, diverged=diverged or not math.isfinite(loss),
                  eval_loss=loss if math.isfinite(loss) else None, eval_acc=0.1 if diverged else acc)
    where = "validation" if config["validation"] else "test"
    print(f"{mode:11s} seed {seed} lr {config['lr']:g} warm-up {config['warmup']}: {record['final_depth']} "
          f"h={record['final_h'][0]}, {where} acc {record['eval_acc']:.4f}{' (diverged)' if diverged else ''}, "
          f"training {cpu:.1f}s CPU / {wall:.1f}s wall", flush=True)
    return record


def choose(tuning: list[dict]) -> dict:
    """Per mode, the (lr, warm-up) of the best final validation accuracy (ties: the lower validation loss)."""
    best = {}
    for mode in MODES:
        mine = [r for r in tuning if r["mode"] == mode and not r["diverged"]]
        pick = max(mine, key=lambda r: (r["eval_acc"], -(r["eval_loss"] or math.inf)))
        best[mode] = {"lr": pick["lr"], "warmup": pick["warmup"], "validation_acc": pick["eval_acc"]}
    return best


def main() -> None:
    args = parse_args("multilevel", "Multi-level training (Chang et al. 2018) on 8x8 digits.")
    clock, load_start = Clock(), os.getloadavg()
    if args.smoke:
        width, epochs, seeds, subset, grid = 4, 3, (0, 1), 200, ((0.1, 1),)
    else:
        # (lr, warm-up epochs): the shared lr 0.1 of the first round, with a warm-up, and a smaller lr
        width, epochs, seeds, subset, grid = 4, 15, (0, 1, 2, 3, 4), None, ((0.1, 0), (0.1, 2), (0.03, 0))
    batch = 64
    base = {"width": width, "epochs": epochs, "batch": batch, "subset": subset}
    tuning_configs = [{**base, "mode": mode, "seed": TUNING_SEED, "lr": lr, "warmup": w, "validation": True}
                      for mode in MODES for lr, w in grid]
    tuning = run_all(train_one, tuning_configs, args.jobs, cost=_cost)
    chosen = choose(tuning)
    clock.log("chosen on the validation split: " + ", ".join(
        f"{m} lr {c['lr']:g} warm-up {c['warmup']}" for m, c in chosen.items()))
    # interleaved so that the runs going side by side are of one seed
    configs = [{**base, "mode": mode, "seed": seed, **{k: chosen[mode][k] for k in ("lr", "warmup")},
                "validation": False} for seed in seeds for mode in MODES]
    runs = run_all(train_one, configs, args.jobs)
    results = {"width": width, "epochs": epochs, "cycle_epochs": epochs // 3, "batch": batch,
               "optimizer": "SGD momentum 0.9, wd 5e-4; linear warm-up (first cycle) then cosine per cycle",
               "seeds": list(seeds), "train_size": len(split(subset, False)[0][0]),
               "test_size": len(split(subset, False)[1][0]),
               "tuning": {"split": f"{VALIDATION:.0%} of the training set (fixed permutation)",
                          "train_size": len(split(subset, True)[0][0]), "validation_size": len(split(subset, True)[1][0]),
                          "seed": TUNING_SEED, "grid": [list(g) for g in grid], "runs": tuning,
                          "chosen": chosen},
               "runs": runs, "time_saved_theory": 1 - 7 / 12,
               "reproducibility": "per-seed times and accuracies reproduce only on the same machine and software "
                                  "(threads, BLAS, torch version); the means and their intervals are what carries over"}
    results.update(_statistics(runs, seeds, results["test_size"]))
    results["claims"] = _claims(results)
    results.update(seconds=clock(), load_average={"start": list(load_start), "end": list(os.getloadavg())},
                   jobs=args.jobs)
    write_json(f"{args.out}/multilevel.json", results)
    _plot(results, f"{args.out}/multilevel.png")
    for claim in results["claims"]:
        clock.log(f"{claim['verdict']}: {claim['claim']}: {claim['measured']}")
    clock.log(f"wrote {args.out}/multilevel.json and multilevel.png")


def _cost(config: dict) -> float:
    return 1.0 if config["mode"] == "multilevel" else 2.0


def _statistics(runs: list[dict], seeds: tuple, test_size: int) -> dict:
    """Per mode: accuracy and times with CIs; per seed: time saved and paired accuracy differences."""
    by = {mode: [next(r for r in runs if r["mode"] == mode and r["seed"] == s) for s in seeds] for mode in MODES}
    summary = {}
    for mode, mine in by.items():
        summary[mode] = {"final_depth": mine[0]["final_depth"], "final_h": mine[0]["final_h"],
                         "parameters": mine[0]["parameters"], "lr": mine[0]["lr"], "warmup": mine[0]["warmup"],
                         "test_acc": mean_ci([r["eval_acc"] for r in mine]),
                         "cpu_seconds": mean_ci([r["train_cpu_seconds"] for r in mine]),
                         "wall_seconds": mean_ci([r["train_seconds"] for r in mine]),
                         "diverged": sum(r["diverged"] for r in mine)}
    multi = by["multilevel"]
    saved = {}
    for base in ("baseline", "baseline-h4"):
        saved[base] = {clock: mean_ci([1 - m[key] / b[key] for m, b in zip(multi, by[base])])
                       for clock, key in (("cpu", "train_cpu_seconds"), ("wall", "train_seconds"))}
    differences = {base: paired([r["eval_acc"] for r in multi], [r["eval_acc"] for r in by[base]])
                   for base in ("baseline", "baseline-h4")}
    differences["baseline-h4 - baseline"] = paired([r["eval_acc"] for r in by["baseline-h4"]],
                                                   [r["eval_acc"] for r in by["baseline"]])
    per_depth = {}
    for r in runs:
        for e in r["epochs"][1:]:                             # the first epoch includes warm-up of the allocator
            key = e["depth"] if r["mode"] == "multilevel" else f"8-8-8 ({r['mode']})"
            per_depth.setdefault(key, []).append(e["cpu_seconds"])
    per_depth = {k: sorted(v)[len(v) // 2] for k, v in per_depth.items()}
    mean_acc = sum(s["test_acc"]["mean"] for s in summary.values()) / len(summary)
    return {"summary": summary, "time_saved": saved, "accuracy_difference": differences,
            "epoch_cpu_seconds_median": per_depth,
            "min_detectable_difference": min_detectable_difference(test_size, mean_acc)}


def _claims(results: dict) -> list[dict]:
    """The summary rows: the time saving, and accuracy against each baseline (a 1-point non-inferiority margin)."""
    saved = results["time_saved"]["baseline"]["cpu"]
    rows = [{"claim": "multi-level training saves ~40% of the training time of the deep net",
             "paper": "Chang et al. 2018",
             "measured": f"CPU time saved {fmt_ci(saved, 100)}% (per seed {_range(saved, 100)}%; wall "
                         f"{fmt_ci(results['time_saved']['baseline']['wall'], 100)}%); theory 41.7%",
             "verdict": "supported" if saved["lo"] is not None and saved["lo"] > 0.30 else "undecided",
             "why": "process CPU time per run, 5 seeds; the saving is below 41.7% because an epoch's cost grows "
                    "less than in proportion to depth (stem, head, data, optimizer)"}]
    mdd = results["min_detectable_difference"]
    for base, name in (("baseline", "h = 1"), ("baseline-h4", "h = 1/4")):
        d = results["accuracy_difference"][base]
        tuned = results["summary"][base]
        if d["lo"] is not None and d["lo"] > -0.01:
            verdict, why = "supported", "the paired 95% CI excludes a loss of more than 1 point"
        elif d["hi"] is not None and d["hi"] < 0:
            verdict, why = "contradicted", "the paired 95% CI lies below zero"
        else:
            verdict, why = "undecided", "the paired 95% CI includes losses of more than 1 point"
        rows.append({"claim": f"multi-level training loses no accuracy against 8-8-8 trained from the start ({name})",
                     "paper": "Chang et al. 2018",
                     "measured": f"multilevel − baseline {fmt_ci(d, 100)} pp ({d['sign']} seeds better), baseline "
                                 f"tuned on validation (lr {tuned['lr']:g}, warm-up {tuned['warmup']} epochs): "
                                 f"{fmt_ci(tuned['test_acc'], 100)}%",
                     "verdict": verdict,
                     "why": f"{why}; {results['test_size']} test images (MDD ≈ {100 * mdd:.1f} pp unpaired), "
                            "digits does not need the depth"})
    return rows


def _range(ci: dict, scale: float) -> str:
    return f"{min(ci['values']) * scale:.1f}…{max(ci['values']) * scale:.1f}"


def _plot(results: dict, path: str) -> None:
    plt = pyplot()
    fig, (ax1, ax2, ax3) = plt.subplots(1, 3, figsize=(16, 4.6), gridspec_kw={"width_ratios": [1.4, 1, 1]})
    for mode in MODES:
        runs = [r for r in results["runs"] if r["mode"] == mode]
        for i, r in enumerate(runs):
            acc = [100 * e["eval_acc"] for e in r["epochs"]]
            ax1.plot(range(1, len(acc) + 1), acc, color=COLORS[mode], alpha=0.45, lw=0.9,
                     label=f"{LABELS[mode]} (one line per seed)" if i == 0 else None)
            if r["diverged"]:
                ax1.plot(len(acc) + 1, 80.5, "x", color=COLORS[mode], ms=9, mew=2)
    for k in (1, 2):
        ax1.axvline(k * results["cycle_epochs"] + 0.5, color="grey", lw=0.8, ls="--")
    ax1.set(xlabel="epoch (dashed: interpolations 2-2-2 -> 4-4-4 -> 8-8-8; x: diverged)", ylabel="test accuracy (%)",
            ylim=(80, 100.5), title=f"digits, {results['epochs']} epochs, {len(results['seeds'])} seeds")
    ax1.legend(fontsize=7, loc="lower right")
    summary = results["summary"]
    for i, mode in enumerate(MODES):
        s = summary[mode]
        for ax, values, scale in ((ax2, s["test_acc"], 100), (ax3, s["cpu_seconds"], 1)):
            xs = [i + 0.08 * (j - 2) for j in range(len(values["values"]))]
            ax.plot(xs, [scale * v for v in values["values"]], "o", color=COLORS[mode], alpha=0.6, ms=5)
            if values["lo"] is not None:
                ax.errorbar(i + 0.3, scale * values["mean"], yerr=scale * (values["hi"] - values["mean"]),
                            fmt="s", color="k", capsize=4, ms=5)
    names = ["from start\nh = 1", "from start\nh = 1/4", "multi-level"]
    tuned = [f"\nlr {summary[m]['lr']:g}, wu {summary[m]['warmup']}" for m in MODES]
    for ax in (ax2, ax3):
        ax.set_xticks(range(len(MODES)), [n + t for n, t in zip(names, tuned)], fontsize=8)
        ax.grid(True, axis="y", alpha=0.3)
    ax2.set(ylabel="final test accuracy (%)", title="per seed (dots), mean ± 95% CI (black)")
    saved = results["time_saved"]["baseline"]["cpu"]
    ax3.set(ylabel="training CPU time per run (s)", ylim=(0, None),
            title=f"CPU time saved vs h = 1: {fmt_ci(saved, 100)}% (theory 42%)")
    save_figure(fig, path)



if __name__ == "__main__":
    main()
