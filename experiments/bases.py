"""Constant against linear theta(t): does re-manifestation converge at the scheme's order off the pieces?

Queiruga et al. 2020 observe that a piecewise-constant ContinuousNet only re-manifests cleanly when the steps
resolve the pieces ("Nt >= 3M" and aligned step counts). The same small ContinuousNet-style conv net on
scikit-learn's 8x8 digits is trained with RK4 twice, with theta(t) piecewise constant on M pieces and piecewise
linear on M FEM nodes (the same parameter count), steps = M. Without further training each model is re-manifested
with euler, midpoint and rk4 over step counts that do and do not align with the pieces/elements, and the logits
are compared in float64 (eval mode, BatchNorm statistics as trained) with a fine rk4 reference (`REFERENCE`
steps, a multiple of every piece count). The fitted order over the unaligned step counts answers the question:
a jump in theta(t) inside a step costs O(h) per jump, a kink O(h^2), so the prediction is order 1 for constant
and min(2, p) for linear at unaligned steps, and the scheme's order p at aligned ones. A third row is a
shared-weight ODE-Net of the same F whose dependence on t is smooth (`time: film`, FiLM after each BatchNorm;
fewer parameters: one F plus the film maps): with nothing to align with, it should converge at p everywhere.

    .venv/bin/python experiments/bases.py [--smoke]
"""

from __future__ import annotations

import math
import time

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

BASES = {"constant": "{{kind: basis, pieces: {m}}}", "linear": "{{kind: basis, functions: linear, pieces: {m}}}",
         "shared-film": "shared"}  # one F whose t-dependence is FiLM from t (`TIME`)
TIME = {"shared-film": "{kind: film, hidden: 16}"}
SCHEMES = {"euler": 1, "midpoint": 2, "rk4": 4}
REFERENCE = 240

SPEC = """\
name: digits-bases
seed: {seed}
input: {{channels: 1, height: 8, width: 8}}
stem: {{kind: conv, channels: {width}, kernel: 3}}
stages:
  - channels: {width}
    entry: {{kind: stitch, stride: 1}}
    module:   # ContinuousNet's unit with a smooth activation, so that only theta(t) limits the order
      kind: layers
      layers: [{{kind: conv, bias: true}}, tanh, batchnorm, {{kind: conv, bias: true}}, tanh, batchnorm]
    integrator: rk4
    steps: {steps}
    weights: {weights}
    time: {time}
    step: {{T: 1}}
output: {{classes: 10}}
"""


def network(basis: str, m: int, width: int, seed: int):
    """One basis stage of `width` channels, M pieces or nodes, trained with M - 1 or M rk4 steps (shared: M)."""
    steps = m - 1 if basis == "linear" else m  # steps aligned with the pieces / elements
    return rkcompile.build(rkcompile.parse_spec(SPEC.format(seed=seed, width=width, steps=steps,
                                                        weights=BASES[basis].format(m=m),
                                                        time=TIME.get(basis, "none"))))


def aligned(basis: str, m: int, steps: int) -> bool:
    """Every piece boundary / FEM node falls on a step boundary (a shared F has none: counted as unaligned)."""
    if basis not in ("constant", "linear"):
        return False
    cells = m if basis == "constant" else m - 1
    return steps % cells == 0


def fit(steps: list[int], errors: list[float]) -> float | None:
    """Least-squares slope of -log(error) against log(steps)."""
    pts = [(math.log(n), math.log(e)) for n, e in zip(steps, errors) if e and e > 0]
    if len(pts) < 2:
        return None
    mx, my = sum(p[0] for p in pts) / len(pts), sum(p[1] for p in pts) / len(pts)
    return -sum((x - mx) * (y - my) for x, y in pts) / sum((x - mx) ** 2 for x, _ in pts)


def train_one(config: dict) -> dict:
    """Train one basis with rk4, then measure each re-manifestation's logit error against the fine reference."""
    torch.set_num_threads(1)
    digits = datasets().digits()
    train, test = tensors(digits.train), tensors(digits.test)
    if config["subset"]:
        train, test = tuple(t[:config["subset"]] for t in train), tuple(t[:config["subset"] // 2] for t in test)
    basis, m = config["basis"], config["m"]
    model = network(basis, m, config["width"], config["seed"])
    run = train_classifier(model, train, test, config["epochs"], 64,
                           lambda p: torch.optim.Adam(p, lr=3e-3), config["seed"])
    model = model.double().eval()
    x = test[0].double()
    started = time.process_time()
    with torch.no_grad():
        reference = remanifest(model, integrator="rk4", steps=REFERENCE)(x)
        out = {}
        for scheme in SCHEMES:
            rows = []
            for n in config["steps"]:
                new = remanifest(model, integrator=scheme, steps=n)
                error = (new(x) - reference).abs().max().item()
                rows.append({"steps": n, "aligned": aligned(basis, m, n), "logit_error": error,
                             "test_acc": evaluate(new.float(), *test)[1]})
            out[scheme] = rows
    eval_cpu = time.process_time() - started
    print(f"{basis:8s} M={m}: test acc {run['test_acc_final']:.4f} (train {run['seconds']:.1f}s, "
          f"re-manifestations {eval_cpu:.1f}s CPU)", flush=True)
    return {"basis": basis, "m": m, "parameters": parameter_count(model), "test_acc": run["test_acc_final"],
            "train_seconds": run["seconds"], "eval_cpu_seconds": eval_cpu, "cpu_seconds": time.process_time(),
            "eval": out}


def main() -> None:
    args = parse_args("bases", "Constant against linear theta(t): re-manifestation order off the pieces.")
    clock = Clock()
    if args.smoke:
        width, m, epochs, subset, steps = 4, 4, 1, 200, [3, 4, 5, 6]
    else:
        width, m, epochs, subset, steps = 12, 4, 20, None, [3, 4, 5, 6, 7, 8, 9, 11, 12, 13, 16, 17, 24, 25, 48, 49]
    configs = [{"basis": b, "m": m, "width": width, "epochs": epochs, "seed": 0, "subset": subset, "steps": steps}
               for b in BASES]
    # measured CPU per run: shared-film 221 s, linear 175 s, constant 152 s; longest first, so that the two
    # processes end together (shared-film alone, then linear + constant)
    cost = {"shared-film": 3, "linear": 2, "constant": 1}
    runs = run_all(train_one, configs, args.jobs, cost=lambda c: cost[c["basis"]])
    summary = []
    for r in runs:
        for scheme, p in SCHEMES.items():
            rows = r["eval"][scheme]
            off = [row for row in rows if not row["aligned"]]
            on = [row for row in rows if row["aligned"]]
            summary.append({"basis": r["basis"], "scheme": scheme, "scheme_order": p,
                            "order_unaligned": fit([w["steps"] for w in off], [w["logit_error"] for w in off]),
                            "order_aligned": fit([w["steps"] for w in on], [w["logit_error"] for w in on]),
                            "acc_min": min(w["test_acc"] for w in rows), "acc_max": max(w["test_acc"] for w in rows)})
    for row in summary:
        print(f"{row['basis']:8s} {row['scheme']:8s} order unaligned {row['order_unaligned']}, aligned "
              f"{row['order_aligned']}; accuracy {row['acc_min']:.4f}-{row['acc_max']:.4f}", flush=True)
    results = {"width": width, "m": m, "epochs": epochs, "reference_steps": REFERENCE, "steps": steps,
               "runs": runs, "summary": summary, "seconds": clock()}
    write_json(f"{args.out}/bases.json", results)
    _plot(results, f"{args.out}/bases.png")
    clock.log(f"wrote {args.out}/bases.json and bases.png")


def _plot(results: dict, path: str) -> None:
    plt = pyplot()
    fig, axes = plt.subplots(1, len(results["runs"]), figsize=(5 * len(results["runs"]), 4), sharey=True)
    for ax, run in zip(axes, results["runs"]):
        for scheme in SCHEMES:
            rows = run["eval"][scheme]
            for flag, marker in ((True, "o"), (False, "x")):
                pts = [(w["steps"], w["logit_error"]) for w in rows if w["aligned"] == flag and w["logit_error"] > 0]
                if pts:
                    ax.loglog(*zip(*pts), marker, label=f"{scheme} ({'aligned' if flag else 'unaligned'})")
        ax.set_title(f"{run['basis']} theta(t), M = {run['m']}" if run["basis"] in ("constant", "linear")
                     else "shared F(y, t), FiLM from t")
        ax.set_xlabel("steps")
        ax.legend(fontsize=7)
    axes[0].set_ylabel(f"max |logits - rk4({results['reference_steps']})|")
    save_figure(fig, path)


if __name__ == "__main__":
    main()
