"""Pendulum convergence (Queiruga et al. 2020, Sec. 3, Fig. 3-4): is an ODE-Net trained at one step a numerical integrator?

ODE-Nets F = one Euler / midpoint / RK4 step of G = linear(2->50) -> tanh -> linear(50->2) (specs/pendulum-odenet.yaml
with overrides, shared weights) are fitted to one-step pairs of the exact pendulum flow sampled every dt_data. Each
trained G is then rolled out to a fixed final time T with other step sizes dt (and with the other two schemes:
integrator interchange, a rebuild with overrides + load_state_dict), and the global error
E(dt) = ||x_Nt - x_true(T)||_2 is compared with the exact solution (Jacobi elliptic functions) and with the same
three integrators applied to the true vector field.

Besides the training trajectory's own start, E(dt) is measured from held-out initial conditions (starts not in
the training set: phases between the training samples and nearby amplitudes), and the dip is summarised by a
statistic that divides by no single error: log10(floor / best), the geometric mean of E over dt <= dt_data/4
against the smallest E on the dt grid, each a geometric mean over the held-out starts, per seed.

    .venv/bin/python experiments/pendulum.py [--smoke] [--jobs 2]
"""

from __future__ import annotations

import math
import os

import numpy as np
import torch
from common import ROOT, Clock, datasets, parse_args, pyplot, run_all, save_figure, write_json
from stats import fmt_ci, mean_ci

import rkcompile

SPEC = ROOT / "specs" / "pendulum-odenet.yaml"
SCHEMES = ("euler", "midpoint", "rk4")
DT_DATA = 0.1
RHO0 = 3 * math.pi / 4       # the training trajectory's start, from rest (Queiruga et al. 2020)
T_FINAL = 1.2                  # a multiple of every dt below; away from the half period (1.53 s), where the
                               # integrators' leading error terms happen to cancel and midpoint looks third order
SHIFTS = range(-5, 3)          # dt = dt_data * 2^k: 0.003125 ... 0.4
SWEEP = (0.1,)         # training steps dt_data of the dip-vs-dt_data sweep (the first round also had 0.025, 0.05, 0.2)
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


def slope(dts: list[float], errors: list, lo: float, hi: float) -> float | None:
    """Least-squares slope of log E against log dt over lo <= dt <= hi."""
    pts = [(math.log(d), math.log(e)) for d, e in zip(dts, errors) if lo <= d <= hi and e is not None and e > 0]
    if len(pts) < 2:
        return None
    return float(np.polyfit(*zip(*pts), 1)[0])


def _finite(value: float) -> float | None:
    return float(value) if math.isfinite(value) else None


# held-out initial conditions: (rho0, t0) of starts not in the training set (the training pairs start at multiples
# of dt_data on the rho0 = 3*pi/4 orbit): phases half-way between training samples, and two nearby amplitudes
HELDOUT = tuple((RHO0, t0) for t0 in (0.05, 0.85, 1.65, 2.45)) + tuple(
    (a * math.pi, t0) for a in (0.70, 0.80) for t0 in (0.0, 1.05))
FLOOR = 0.25                   # the floor of the dip statistic: the errors at dt <= FLOOR * dt_data


def starts(data, heldout: bool) -> tuple[torch.Tensor, np.ndarray]:
    """Initial states (n, 2) and the exact states at t0 + T: the training start, or the held-out ones."""
    points = HELDOUT if heldout else ((RHO0, 0.0),)
    x0 = np.stack([data.pendulum_state(t0, rho0) for rho0, t0 in points])
    exact = np.stack([data.pendulum_state(t0 + T_FINAL, rho0) for rho0, t0 in points])
    return torch.tensor(x0, dtype=torch.float64), exact


def geometric_mean(rows: np.ndarray) -> list:
    """Per column, the geometric mean over rows (None where any entry is not finite)."""
    out = []
    for column in np.asarray(rows, dtype=np.float64).T:
        out.append(float(np.exp(np.log(column).mean())) if np.all(np.isfinite(column)) and np.all(column > 0)
                   else None)
    return out


def errors_from(step_at, dts: list[float], x0: torch.Tensor, exact: np.ndarray) -> np.ndarray:
    """E(dt) for every start (rows) and dt (columns) of the map `step_at(dt)` rolled out to T."""
    table = np.empty((len(x0), len(dts)))
    for j, dt in enumerate(dts):
        final = rollout(step_at(dt), x0, round(T_FINAL / dt))[-len(x0):].numpy()
        with np.errstate(invalid="ignore", over="ignore"):
            table[:, j] = np.linalg.norm(final - exact, axis=-1)
    return np.where(np.isfinite(table), table, np.inf)


def dip_statistic(dts: list[float], errors: list, dt_data: float) -> float | None:
    """log10(floor / best): geometric mean of E over dt <= FLOOR*dt_data against min E on the grid (0: no dip)."""
    floor = [e for d, e in zip(dts, errors) if d <= FLOOR * dt_data * (1 + 1e-9)]
    if not floor or any(e is None for e in errors):
        return None
    return float(np.mean(np.log10(floor)) - math.log10(min(errors)))


def train_and_measure(config: dict) -> dict:
    """One ODE-Net: fit at dt_data, then E(dt) of its G in every scheme (or only its own for the sweep)."""
    torch.set_num_threads(1)
    data = datasets()
    dt_data, train, seed = config["dt_data"], config["train"], config["seed"]
    pairs = data.pendulum(dt_data, t_end=10.0, test_fraction=0.0, dtype=torch.float64).train.tensors
    weights, e_opt = fit(train, *pairs, config["iterations"], seed, dt_data)
    dts = [dt_data * 2.0**k for k in config["shifts"]]
    run = {"seed": seed, "train": train, "dt_data": dt_data, "e_opt": e_opt, "dts": dts, "eval": {}, "heldout": {}}
    (x0, exact), (h0, hexact) = starts(data, False), starts(data, True)
    for scheme in (SCHEMES if config["interchange"] else (train,)):
        def step_at(dt, scheme=scheme):
            model = odenet(scheme, dt)
            model.load_state_dict(weights)
            return model

        own = errors_from(step_at, dts, x0, exact)[0]
        run["eval"][scheme] = {"error": [_finite(e) for e in own], **_summary(dts, [_finite(e) for e in own], dt_data)}
        held = errors_from(step_at, dts, h0, hexact)
        curve = geometric_mean(held)
        run["heldout"][scheme] = {"error": curve, "per_start": [[_finite(e) for e in row] for row in held],
                                  "dip": dip_statistic(dts, curve, dt_data), **_summary(dts, curve, dt_data)}
    if config["trajectories"]:
        run["trajectories"] = _trajectories(weights, train, data)
    own = run["heldout"][train]
    print(f"dt_data {dt_data:g} seed {seed} {train:8s} e_opt {e_opt:.2e}  held-out E(dt_data) {own['at_dt_data']:.2e}"
          f"  log10(floor/best) {own['dip']}", flush=True)
    return run


def main() -> None:
    """Train the ODE-Nets, measure E(dt) for every (training scheme, evaluation scheme), write JSON and plots."""
    args = parse_args("pendulum", "Pendulum ODE-Nets (Queiruga et al. 2020, Sec. 3): global error vs dt, integrator interchange.")
    clock, data, load_start = Clock(), datasets(), os.getloadavg()
    seeds, iterations = ((0, 1), 150) if args.smoke else ((0, 1, 2, 3, 4), 6000)
    shifts = list(range(-3, 2) if args.smoke else SHIFTS)
    sweep = (0.05, 0.1) if args.smoke else SWEEP
    dts = [DT_DATA * 2.0**k for k in shifts]
    results = {"dt_data": DT_DATA, "T": T_FINAL, "dts": dts, "iterations": iterations, "seeds": list(seeds),
               "training_pairs": round(10.0 / DT_DATA), "heldout_starts": [list(p) for p in HELDOUT],
               "dip_floor": FLOOR, "numerical": {}, "numerical_heldout": {}}
    (x0, exact), (h0, hexact) = starts(data, False), starts(data, True)
    for scheme in SCHEMES:
        def step_at(dt, scheme=scheme):
            return _true_step(scheme, dt, data.pendulum_field)

        own = [_finite(e) for e in errors_from(step_at, dts, x0, exact)[0]]
        results["numerical"][scheme] = {"error": own, **_summary(dts, own, DT_DATA)}
        held = geometric_mean(errors_from(step_at, dts, h0, hexact))
        results["numerical_heldout"][scheme] = {"error": held, "dip": dip_statistic(dts, held, DT_DATA),
                                                **_summary(dts, held, DT_DATA)}
    configs = [{"dt_data": dt_data, "train": train, "seed": seed, "iterations": iterations, "shifts": shifts,
                "interchange": dt_data == DT_DATA, "trajectories": dt_data == DT_DATA and seed == seeds[0]}
               for dt_data in sorted(sweep, key=lambda d: d != DT_DATA) for seed in seeds for train in SCHEMES]
    runs = run_all(train_and_measure, configs, args.jobs, cost=lambda c: 3 if c["interchange"] else 1)
    trajectories = {r["train"]: r.pop("trajectories") for r in runs if "trajectories" in r}
    results["runs"] = [r for r in runs if r["dt_data"] == DT_DATA]
    results["table"] = _table(results)
    results["dip_sweep"] = _dip_sweep(runs, sweep, seeds)
    results["claims"] = _claims(results)
    results.update(seconds=clock(), jobs=args.jobs, load_average={"start": list(load_start),
                                                                  "end": list(os.getloadavg())})
    write_json(f"{args.out}/pendulum.json", results)
    _plot(results, f"{args.out}/pendulum.png")
    _plot_trajectories(trajectories, data, f"{args.out}/pendulum-trajectories.png")
    _plot_sweep(results["dip_sweep"], f"{args.out}/pendulum-dip.png")
    for claim in results["claims"]:
        clock.log(f"{claim['verdict']}: {claim['claim']}: {claim['measured']}")
    clock.log(f"wrote {args.out}/pendulum.json, pendulum.png, pendulum-trajectories.png, pendulum-dip.png")


def _true_step(scheme: str, dt: float, field):
    """One step of the plain integrator (the same tableau) on the true vector field."""
    _, A, b = (v.tolist() for v in rkcompile.get_tableau(scheme).as_float())

    def step(x):
        k = []
        for i in range(len(b)):
            k.append(field(x + dt * sum(A[i][j] * k[j] for j in range(i))))
        return x + dt * sum(b[i] * k[i] for i in range(len(b)))

    return step


def _dip_sweep(runs: list[dict], steps: tuple, seeds: tuple) -> list[dict]:
    """For each training step dt_data and scheme: per seed E at dt_data and dt_data/2, and the held-out dip statistic."""
    rows = []
    for dt_data in steps:
        for scheme in SCHEMES:
            for seed in seeds:
                run = next(r for r in runs if r["dt_data"] == dt_data and r["train"] == scheme and r["seed"] == seed)
                at = dict(zip(run["dts"], run["eval"][scheme]["error"]))
                e1, e2 = at.get(dt_data), at.get(dt_data / 2)
                rows.append({"dt_data": dt_data, "seed": seed, "scheme": scheme, "e_opt": run["e_opt"],
                             "at_dt_data": e1, "at_half": e2, "dip_ratio": e2 / e1 if e1 and e2 is not None else None,
                             "dip": run["heldout"][scheme]["dip"]})
    return rows


def _dips(rows: list[dict], scheme: str, dt_data: float) -> list[float]:
    return [r["dip"] for r in rows if r["scheme"] == scheme and r["dt_data"] == dt_data and r["dip"] is not None]


def _claims(results: dict) -> list[dict]:
    """The summary rows: the dip (held-out starts, per-seed statistic with a CI) and the interchange of midpoint's G."""
    rows, sweep = [], results["dip_sweep"]
    n = len(results["seeds"])
    cis = {s: mean_ci(_dips(sweep, s, DT_DATA)) for s in SCHEMES}

    def fmt(ci):
        return f"log10(floor/best) {fmt_ci(ci, 1, 2)} (×{10 ** ci['mean']:.3g})"

    def dips(ci):               # a dip of at least 2x that the whole CI keeps
        return ci["lo"] is not None and ci["lo"] > math.log10(2)

    def flat(ci):
        return ci["hi"] is not None and ci["hi"] < math.log10(2)

    where = f"{len(HELDOUT)} held-out starts, {n} seeds, dt_data = {DT_DATA:g}"
    rows.append({"claim": "an ODE-Net trained as one Euler step has a dip at dt_data: its error grows as dt shrinks",
                 "paper": "Queiruga et al. 2020 (ContinuousNet), Sec. 3", "measured": fmt(cis["euler"]),
                 "verdict": "supported" if dips(cis["euler"]) else "contradicted" if flat(cis["euler"]) else "undecided",
                 "why": f"{where}; floor = E at dt ≤ dt_data/4, best = smallest E on the grid"})
    rows.append({"claim": "an RK4 ODE-Net has no dip: it converges like an integrator down to a floor",
                 "paper": "Queiruga et al. 2020 (ContinuousNet), Sec. 3", "measured": fmt(cis["rk4"]),
                 "verdict": "supported" if flat(cis["rk4"]) else "contradicted" if dips(cis["rk4"]) else "undecided",
                 "why": f"{where}; the whole CI below log10 2 counts as no dip"})
    others = sorted(d for d in {r["dt_data"] for r in sweep} if d != DT_DATA)
    extra = "".join(f"; at dt_data = {d:g}: {fmt(mean_ci(_dips(sweep, 'midpoint', d)))}" for d in others
                    if len(_dips(sweep, "midpoint", d)) > 1)
    rows.append({"claim": "a midpoint ODE-Net has no dip either",
                 "paper": "Queiruga et al. 2020 (ContinuousNet), Sec. 3",
                 "measured": fmt(cis["midpoint"]) + extra,
                 "verdict": "contradicted" if dips(cis["midpoint"]) else "supported" if flat(cis["midpoint"])
                 else "undecided",
                 "why": f"{where}; a dip appears when the scheme's truncation error per step at dt_data exceeds "
                        "what the fit leaves (the sweep over dt_data)"})
    at = 4 * DT_DATA
    j = min(range(len(results["dts"])), key=lambda i: abs(results["dts"][i] - at))
    curves = [r["heldout"] for r in results["runs"] if r["train"] == "midpoint"]
    ratios = [math.log10(c["midpoint"]["error"][j] / c["rk4"]["error"][j]) for c in curves
              if c["midpoint"]["error"][j] and c["rk4"]["error"][j]]
    if len(ratios) > 1:
        ci = mean_ci(ratios)
        rows.append({"claim": "midpoint's G evaluated with RK4 improves the error at dt > 2 dt_data",
                     "paper": "Queiruga et al. 2020 (ContinuousNet), Sec. 3",
                     "measured": f"log10(E as midpoint / E as RK4) at dt = {results['dts'][j]:g}: {fmt_ci(ci, 1, 2)} "
                                 f"(×{10 ** ci['mean']:.3g}, {sum(r > 0 for r in ratios)}/{len(ratios)} seeds)",
                     "verdict": "supported" if ci["lo"] > 0 else "contradicted" if ci["hi"] < 0 else "undecided",
                     "why": f"{where}; paired per seed (one G, two schemes)"})
    return rows


def _plot_sweep(rows: list[dict], path: str) -> None:
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    steps = sorted({r["dt_data"] for r in rows})
    for k, scheme in enumerate(SCHEMES):
        offset = 1 + 0.06 * (k - 1)
        for d in steps:
            values = _dips(rows, scheme, d)
            ax.semilogx([d * offset] * len(values), values, ".", color=COLORS[scheme], alpha=0.5, ms=6)
        means = [mean_ci(_dips(rows, scheme, d)) for d in steps]
        ax.errorbar([d * offset for d in steps], [m["mean"] for m in means],
                    yerr=[[m["mean"] - (m["lo"] if m["lo"] is not None else m["mean"]) for m in means],
                          [(m["hi"] if m["hi"] is not None else m["mean"]) - m["mean"] for m in means]],
                    fmt="o-", color=COLORS[scheme], capsize=3, label=f"ODE-Net({scheme}): seeds, mean ± 95% CI")
    ax.axhline(0.0, color="grey", lw=0.8, ls="--")
    _dt_ticks(ax, steps)
    ax.set_xlabel("training step dt_data")
    ax.set_ylabel("log10(floor / best error), held-out starts")
    ax.set_title("The dip: > 0 means the error grows again as dt shrinks")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    save_figure(fig, path)


def _summary(dts: list[float], errors: list, dt_data: float = DT_DATA) -> dict:
    """Slopes above/below dt_data and the old dip ratio E(dt_data/2) / E(dt_data) (> 1: the error grows as dt shrinks)."""
    at = {round(d / dt_data, 6): e for d, e in zip(dts, errors)}
    e0, half = at.get(1.0), at.get(0.5)
    return {"at_dt_data": e0, "slope_above": slope(dts, errors, dt_data, dts[-1]),
            "slope_below": slope(dts, errors, dts[0], dt_data),
            "dip_ratio": half / e0 if e0 and half is not None else None}


def _table(results: dict) -> list[dict]:
    """Medians over seeds of each (training scheme, evaluation scheme) pair from the training start; held-out dips."""
    rows = []
    for train in SCHEMES:
        for scheme in SCHEMES:
            runs = [r for r in results["runs"] if r["train"] == train]
            row = {"train": train, "eval": scheme, "e_opt": _median([r["e_opt"] for r in runs])}
            for key in ("at_dt_data", "dip_ratio", "slope_above", "slope_below"):
                row[key] = _median([r["eval"][scheme][key] for r in runs])
            row["heldout_at_dt_data"] = _median([r["heldout"][scheme]["at_dt_data"] for r in runs])
            dips = [r["heldout"][scheme]["dip"] for r in runs if r["heldout"][scheme]["dip"] is not None]
            row["heldout_dip"] = mean_ci(dips) if len(dips) > 1 else None
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
    fig, axes = plt.subplots(2, 4, figsize=(18, 8.4), sharey=True)
    for row, (key, ref_key, where) in enumerate((("eval", "numerical", "from the training start"),
                                                 ("heldout", "numerical_heldout",
                                                  f"held-out starts (geometric mean of {len(HELDOUT)})"))):
        for ax, panel in zip(axes[row], ("own",) + SCHEMES):
            for scheme in SCHEMES:
                ref = results[ref_key][scheme]["error"]
                ax.loglog(dts, [np.nan if e is None else e for e in ref], "k", lw=1,
                          ls=(0, (1 + SCHEMES.index(scheme), 2)),
                          label=f"numerical {scheme}" if panel == "own" else None)
            for train in SCHEMES:
                scheme = train if panel == "own" else panel
                curves = [[np.nan if e is None else e for e in r[key][scheme]["error"]]
                          for r in results["runs"] if r["train"] == train]
                for curve in curves:
                    ax.loglog(dts, curve, "-", color=COLORS[train], lw=0.8, alpha=0.45)
                    bad = [d for d, e in zip(dts, curve) if not np.isfinite(e)]
                    ax.plot(bad, [1e1] * len(bad), "x", color=COLORS[train], ms=7)
                ax.loglog(dts, np.exp(np.nanmedian(np.log(np.array(curves)), axis=0)), "o-", color=COLORS[train],
                          ms=4, lw=1.8, label=f"ODE-Net({train})" + ("" if panel == "own" else f" as {panel}"))
            ax.axvline(results["dt_data"], color="grey", lw=0.8, ls="--")
            _dt_ticks(ax, dts)
            ax.set_xlabel("dt")
            title = "each G in its own scheme" if panel == "own" else f"every G evaluated with {panel}"
            ax.set_title(f"{title}\n{where}", fontsize=9)
            ax.legend(fontsize=7)
            ax.grid(True, which="both", alpha=0.3)
        axes[row][0].set_ylabel(f"global error E(dt) at T = {results['T']}")
    fig.suptitle(f"Pendulum ODE-Nets trained at dt_data = {results['dt_data']} (dashed line): every seed (thin), "
                 f"median (thick); black: the integrators on the true field; x: non-finite")
    save_figure(fig, path)


def _dt_ticks(ax, dts) -> None:
    """Major ticks at the step sizes, labelled as numbers; no minor labels."""
    from matplotlib.ticker import NullFormatter

    ax.set_xticks(list(dts), [f"{d:g}" for d in dts], rotation=45, fontsize=7)
    ax.xaxis.set_minor_formatter(NullFormatter())


def _plot_trajectories(trajectories: dict, data, path: str) -> None:
    plt = pyplot()
    fig, axes = plt.subplots(2, 1, figsize=(10, 6), sharex=True)
    for ax, factor in zip(axes, ("1", "0.5")):
        dt = DT_DATA * float(factor)
        t = np.arange(round(10.0 / dt) + 1) * dt
        ax.plot(t, data.pendulum_state(t)[:, 0], "k", lw=2, label="exact")
        for scheme, runs in trajectories.items():
            ax.plot(t, runs[factor], color=COLORS[scheme], lw=1, label=f"ODE-Net({scheme}), first seed")
        ax.set_ylabel("rho(t)")
        ax.set_title(f"rollout with dt = {dt:g} ({'the training step' if factor == '1' else 'half the training step'})")
        ax.legend(fontsize=8, loc="upper right")
    axes[-1].set_xlabel("t")
    save_figure(fig, path)



if __name__ == "__main__":
    main()
