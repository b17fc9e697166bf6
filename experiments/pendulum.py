"""Pendulum convergence (Queiruga et al. 2020, Sec. 3, Fig. 3-4): is an ODE-Net trained at one step a numerical integrator?

ODE-Nets F = one Euler / midpoint / RK4 step of G = linear(2->50) -> tanh -> linear(50->2) (specs/pendulum-odenet.yaml
with overrides, shared weights) are fitted to one-step pairs of the exact pendulum flow sampled every dt_data. Each
trained G is then rolled out to a fixed final time T with other step sizes dt (and with the other two schemes:
integrator interchange, a rebuild with overrides + load_state_dict), and the global error
E(dt) = ||x_Nt - x_true(T)||_2 is compared with the exact solution (Jacobi elliptic functions) and with the same
three integrators applied to the true vector field.

    .venv/bin/python experiments/pendulum.py [--smoke]
"""

from __future__ import annotations

import math

import numpy as np
import torch
from common import ROOT, Clock, datasets, parse_args, pyplot, save_figure, write_json

import rkcompile

SPEC = ROOT / "specs" / "pendulum-odenet.yaml"
SCHEMES = ("euler", "midpoint", "rk4")
DT_DATA = 0.1
T_FINAL = 1.2                  # a multiple of every dt below; away from the half period (1.53 s), where the
                               # integrators' leading error terms happen to cancel and midpoint looks third order
SHIFTS = range(-5, 3)          # dt = dt_data * 2^k: 0.003125 ... 0.4
SWEEP = (0.025, 0.05, 0.1, 0.2)  # training steps dt_data of the dip-vs-dt_data sweep
COLORS = {"euler": "tab:red", "midpoint": "tab:orange", "rk4": "tab:blue"}


def odenet(scheme: str, dt: float, seed: int = 0) -> torch.fx.GraphModule:
    """One `scheme` step of size dt around the spec's shared G, in float64."""
    return rkcompile.build(SPEC, {"stages.0.integrator": scheme, "stages.0.step.h": dt, "seed": seed}).double()


def fit(scheme: str, x: torch.Tensor, y: torch.Tensor, iterations: int, seed: int,
        dt_data: float = DT_DATA) -> tuple[dict, float]:
    """Full-batch Adam on the one-step loss mean ||F(x_k) - x_{k+1}||^2 (Queiruga et al. 2020, eq. 17); return (weights, e_opt)."""
    model = odenet(scheme, dt_data, seed)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, iterations, eta_min=1e-5)
    for _ in range(iterations):
        loss = ((model(x) - y) ** 2).sum(1).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
    with torch.no_grad():
        e_opt = ((model(x) - y) ** 2).sum(1).mean().sqrt().item()
    return model.state_dict(), e_opt


@torch.no_grad()
def rollout(step, x0: torch.Tensor, steps: int) -> torch.Tensor:
    """The states x_0 ... x_steps of the recurrence x_{k+1} = step(x_k)."""
    states = [x0]
    for _ in range(steps):
        states.append(step(states[-1]))
    return torch.cat(states)


def learned_error(weights: dict, scheme: str, dts: list[float], x0: torch.Tensor, exact: np.ndarray) -> list:
    """E(dt) of the trained G wired as `scheme` (integrator interchange when it is not the training scheme)."""
    errors = []
    for dt in dts:
        model = odenet(scheme, dt)
        model.load_state_dict(weights)
        final = rollout(model, x0, round(T_FINAL / dt))[-1].numpy()
        errors.append(_finite(np.linalg.norm(final - exact)))
    return errors


def numerical_error(scheme: str, dts: list[float], x0: torch.Tensor, exact: np.ndarray, field) -> list:
    """E(dt) of the plain integrator (the same tableau) applied to the true vector field."""
    _, A, b = (v.tolist() for v in rkcompile.get_tableau(scheme).as_float())

    def step(x, dt):
        k = []
        for i in range(len(b)):
            k.append(field(x + dt * sum(A[i][j] * k[j] for j in range(i))))
        return x + dt * sum(b[i] * k[i] for i in range(len(b)))

    return [_finite(np.linalg.norm(rollout(lambda x, dt=dt: step(x, dt), x0, round(T_FINAL / dt))[-1].numpy()
                                   - exact)) for dt in dts]


def slope(dts: list[float], errors: list, lo: float, hi: float) -> float | None:
    """Least-squares slope of log E against log dt over lo <= dt <= hi."""
    pts = [(math.log(d), math.log(e)) for d, e in zip(dts, errors) if lo <= d <= hi and e is not None and e > 0]
    if len(pts) < 2:
        return None
    return float(np.polyfit(*zip(*pts), 1)[0])


def _finite(value: float) -> float | None:
    return float(value) if math.isfinite(value) else None


def main() -> None:
    """Train the three ODE-Nets, measure E(dt) for every (training scheme, evaluation scheme), write JSON and plots."""
    args = parse_args("pendulum", "Pendulum ODE-Nets (Queiruga et al. 2020, Sec. 3): global error vs dt, integrator interchange.")
    clock, data = Clock(), datasets()
    seeds, iterations = ((0,), 300) if args.smoke else ((0, 1, 2), 6000)
    shifts = range(-3, 2) if args.smoke else SHIFTS
    dts = [DT_DATA * 2.0**k for k in shifts]
    pairs = data.pendulum(DT_DATA, t_end=10.0, test_fraction=0.0, dtype=torch.float64).train.tensors
    x0 = torch.tensor(data.pendulum_state(0.0), dtype=torch.float64)[None]
    exact = data.pendulum_state(T_FINAL)

    results = {"dt_data": DT_DATA, "T": T_FINAL, "dts": dts, "iterations": iterations, "seeds": list(seeds),
               "training_pairs": len(pairs[0]), "numerical": {}, "runs": []}
    for scheme in SCHEMES:
        errors = numerical_error(scheme, dts, x0, exact, data.pendulum_field)
        results["numerical"][scheme] = {"error": errors, **_summary(dts, errors)}
    for seed in seeds:
        for train in SCHEMES:
            weights, e_opt = fit(train, *pairs, iterations, seed)
            run = {"seed": seed, "train": train, "e_opt": e_opt, "dts": dts, "eval": {}}
            for scheme in SCHEMES:
                errors = learned_error(weights, scheme, dts, x0, exact)
                run["eval"][scheme] = {"error": errors, **_summary(dts, errors)}
            results["runs"].append(run)
            own = run["eval"][train]
            clock.log(f"seed {seed} {train:8s} e_opt {e_opt:.2e}  E(dt_data) {own['at_dt_data']:.2e}  "
                      f"E(dt_data/2)/E(dt_data) {own['dip_ratio']:.3g}  slope above dt_data {own['slope_above']}")
            if seed == seeds[0]:
                results.setdefault("trajectories", {})[train] = _trajectories(weights, train, data)
    results["table"] = _table(results)
    results["dip_sweep"] = _dip_sweep(data, (0.05, 0.1) if args.smoke else SWEEP, iterations, seeds,
                                      results["runs"], clock)
    results["seconds"] = clock()
    trajectories = results.pop("trajectories")
    write_json(f"{args.out}/pendulum.json", results)
    _plot(results, f"{args.out}/pendulum.png")
    _plot_trajectories(trajectories, data, f"{args.out}/pendulum-trajectories.png")
    _plot_sweep(results["dip_sweep"], f"{args.out}/pendulum-dip.png")
    clock.log(f"wrote {args.out}/pendulum.json, pendulum.png, pendulum-trajectories.png, pendulum-dip.png")


def _dip_sweep(data, steps: tuple, iterations: int, seeds: tuple, runs: list[dict], clock: Clock) -> list[dict]:
    """For several training steps dt_data: E at dt_data, dt_data/2 and dt_data/8 in the training scheme, per seed.

    The runs at DT_DATA are the main experiment's (`runs`), not trained again.
    """
    rows = []
    x0 = torch.tensor(data.pendulum_state(0.0), dtype=torch.float64)[None]
    exact = data.pendulum_state(T_FINAL)
    for dt_data in steps:
        pairs = data.pendulum(dt_data, t_end=10.0, test_fraction=0.0, dtype=torch.float64).train.tensors
        for seed in seeds:
            for scheme in SCHEMES:
                if dt_data == DT_DATA:
                    run = next(r for r in runs if r["seed"] == seed and r["train"] == scheme)
                    at = dict(zip(run["dts"], run["eval"][scheme]["error"]))
                    e_opt, (e1, e2, e8) = run["e_opt"], (at[dt_data], at[dt_data / 2], at[dt_data / 8])
                else:
                    weights, e_opt = fit(scheme, *pairs, iterations, seed, dt_data)
                    e1, e2, e8 = learned_error(weights, scheme, [dt_data, dt_data / 2, dt_data / 8], x0, exact)
                rows.append({"dt_data": dt_data, "seed": seed, "scheme": scheme, "e_opt": e_opt, "at_dt_data": e1,
                             "at_half": e2, "at_eighth": e8, "dip_ratio": e2 / e1 if e1 and e2 is not None else None})
        clock.log(f"sweep dt_data {dt_data:g}: median dip ratio " + ", ".join(
            f"{s} {_median([r['dip_ratio'] for r in rows if r['scheme'] == s and r['dt_data'] == dt_data]):.3g}"
            for s in SCHEMES))
    return rows


def _plot_sweep(rows: list[dict], path: str) -> None:
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6, 4.2))
    for scheme in SCHEMES:
        mine = [r for r in rows if r["scheme"] == scheme and r["dip_ratio"]]
        ax.loglog([r["dt_data"] for r in mine], [r["dip_ratio"] for r in mine], ".", color=COLORS[scheme], alpha=0.5)
        steps = sorted({r["dt_data"] for r in mine})
        ax.loglog(steps, [_median([r["dip_ratio"] for r in mine if r["dt_data"] == d]) for d in steps], "o-",
                  color=COLORS[scheme], label=f"ODE-Net({scheme}), median of seeds")
    ax.axhline(1.0, color="grey", lw=0.8, ls="--")
    ax.set_xlabel("training step dt_data")
    ax.set_ylabel("E(dt_data / 2) / E(dt_data)")
    ax.set_title("The dip: > 1 means the error grows when dt shrinks")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    save_figure(fig, path)


def _summary(dts: list[float], errors: list) -> dict:
    """Slopes above/below dt_data and the dip: E(dt_data/2) / E(dt_data) (> 1: the error grows as dt shrinks)."""
    at = {round(d / DT_DATA, 6): e for d, e in zip(dts, errors)}
    e0, half = at.get(1.0), at.get(0.5)
    return {"at_dt_data": e0, "slope_above": slope(dts, errors, DT_DATA, dts[-1]),
            "slope_below": slope(dts, errors, dts[0], DT_DATA),
            "dip_ratio": half / e0 if e0 and half is not None else None}


def _table(results: dict) -> list[dict]:
    """Medians over seeds of each (training scheme, evaluation scheme) pair."""
    rows = []
    for train in SCHEMES:
        for scheme in SCHEMES:
            runs = [r for r in results["runs"] if r["train"] == train]
            row = {"train": train, "eval": scheme, "e_opt": _median([r["e_opt"] for r in runs])}
            for key in ("at_dt_data", "dip_ratio", "slope_above", "slope_below"):
                row[key] = _median([r["eval"][scheme][key] for r in runs])
            rows.append(row)
    return rows


def _median(values: list) -> float | None:
    values = [v for v in values if v is not None]
    return float(np.median(values)) if values else None


def _trajectories(weights: dict, scheme: str, data) -> dict:
    """rho(t) on [0, 10] rolled out with the trained step at dt_data and dt_data / 2 (Fig. 3)."""
    x0 = torch.tensor(data.pendulum_state(0.0), dtype=torch.float64)[None]
    out = {}
    for factor in (1, 0.5):
        dt = DT_DATA * factor
        model = odenet(scheme, dt)
        model.load_state_dict(weights)
        out[str(factor)] = rollout(model, x0, round(10.0 / dt))[:, 0].tolist()
    return out


def _plot(results: dict, path: str) -> None:
    plt = pyplot()
    dts = np.array(results["dts"])
    fig, axes = plt.subplots(1, 4, figsize=(18, 4.4), sharey=True)
    runs = [r for r in results["runs"] if r["seed"] == results["seeds"][0]]
    for ax, panel in zip(axes, ("own",) + SCHEMES):
        for scheme in SCHEMES:
            ref = results["numerical"][scheme]["error"]
            ax.loglog(dts, [np.nan if e is None else e for e in ref], "k", lw=1, ls=(0, (1 + SCHEMES.index(scheme), 2)),
                      label=f"numerical {scheme}" if panel == "own" else None)
        for run in runs:
            scheme = run["train"] if panel == "own" else panel
            errors = [np.nan if e is None else e for e in run["eval"][scheme]["error"]]
            ax.loglog(dts, errors, "o-", color=COLORS[run["train"]], ms=4,
                      label=f"ODE-Net({run['train']})" + ("" if panel == "own" else f" as {panel}"))
        ax.axvline(results["dt_data"], color="grey", lw=0.8, ls="--")
        ax.set_xlabel("dt")
        ax.set_title("each G in its own scheme" if panel == "own" else f"every G evaluated with {panel}")
        ax.legend(fontsize=7)
        ax.grid(True, which="both", alpha=0.3)
    axes[0].set_ylabel(f"global error E(dt) at T = {results['T']}")
    fig.suptitle(f"Pendulum ODE-Nets trained at dt_data = {results['dt_data']} (dashed line), seed "
                 f"{results['seeds'][0]}; black: the integrators on the true field")
    save_figure(fig, path)


def _plot_trajectories(trajectories: dict, data, path: str) -> None:
    plt = pyplot()
    fig, axes = plt.subplots(2, 1, figsize=(10, 6), sharex=True)
    for ax, factor in zip(axes, ("1", "0.5")):
        dt = DT_DATA * float(factor)
        t = np.arange(round(10.0 / dt) + 1) * dt
        ax.plot(t, data.pendulum_state(t)[:, 0], "k", lw=2, label="exact")
        for scheme, runs in trajectories.items():
            ax.plot(t, runs[factor], color=COLORS[scheme], lw=1, label=f"ODE-Net({scheme})")
        ax.set_ylabel("rho(t)")
        ax.set_title(f"rollout with dt = {dt:g} ({'the training step' if factor == '1' else 'half the training step'})")
        ax.legend(fontsize=8, loc="upper right")
    axes[-1].set_xlabel("t")
    save_figure(fig, path)


if __name__ == "__main__":
    main()
