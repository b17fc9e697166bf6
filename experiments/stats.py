"""Statistics of the experiments: mean ± 95% CI over seeds, paired differences, detectable effect sizes, thresholds."""

from __future__ import annotations

import math
from collections.abc import Sequence

from scipy import stats as _stats


def mean_ci(values: Sequence[float], level: float = 0.95) -> dict:
    """Mean and two-sided Student-t confidence interval over seeds ({n, mean, sd, lo, hi, values})."""
    xs = [float(v) for v in values]
    n = len(xs)
    if n == 0:
        raise ValueError("mean_ci of no values")
    mean = sum(xs) / n
    if n == 1:
        return {"n": 1, "mean": mean, "sd": None, "lo": None, "hi": None, "values": xs}
    sd = math.sqrt(sum((x - mean) ** 2 for x in xs) / (n - 1))
    half = float(_stats.t.ppf(0.5 + level / 2, n - 1)) * sd / math.sqrt(n)
    return {"n": n, "mean": mean, "sd": sd, "lo": mean - half, "hi": mean + half, "values": xs}


def paired(a: Sequence[float], b: Sequence[float], level: float = 0.95) -> dict:
    """Per-seed differences a − b with their mean ± CI and sign consistency ("k/n seeds a > b")."""
    if len(a) != len(b):
        raise ValueError(f"paired comparison needs equal seed counts, got {len(a)} and {len(b)}")
    diffs = [float(x) - float(y) for x, y in zip(a, b)]
    out = mean_ci(diffs, level)
    out["a_greater"] = sum(d > 0 for d in diffs)
    out["b_greater"] = sum(d < 0 for d in diffs)
    out["sign"] = f"{out['a_greater']}/{len(diffs)}"
    out["excludes_zero"] = out["lo"] is not None and (out["lo"] > 0 or out["hi"] < 0)
    return out


def min_detectable_difference(n_test: int, accuracy: float, alpha: float = 0.05, power: float = 0.8) -> float:
    """Smallest accuracy difference two classifiers on independent test sets of n_test samples can resolve.

    Normal approximation to two binomial proportions at `accuracy`: (z_{1-α/2} + z_{power})·sqrt(2p(1−p)/n).
    Evaluating both on the same test set (paired) can only do better; this is the conservative bound.
    """
    z = float(_stats.norm.ppf(1 - alpha / 2) + _stats.norm.ppf(power))
    return z * math.sqrt(2 * accuracy * (1 - accuracy) / n_test)


def threshold_interval(grid: Sequence[float], ok: Sequence[bool]) -> dict:
    """The learning-rate threshold as an interval: (largest value that still trains, smallest above it that fails].

    `grid` is sorted ascending. `monotone` says whether every value below the first failure trains.
    """
    pairs = list(zip(grid, ok))
    if any(g2 <= g1 for (g1, _), (g2, _) in zip(pairs, pairs[1:])):
        raise ValueError("threshold_interval needs an ascending grid")
    first_fail = next((g for g, good in pairs if not good), None)
    below = [g for g, good in pairs if good and (first_fail is None or g < first_fail)]
    return {"trains_up_to": below[-1] if below else None, "fails_from": first_fail,
            "monotone": all(good for g, good in pairs if first_fail is None or g < first_fail)
            and not any(good for g, good in pairs if first_fail is not None and g > first_fail)}


def fmt_ci(ci: dict, scale: float = 1.0, digits: int = 1) -> str:
    """'m ± h' (half-width of the CI) or 'm' for one seed, values scaled (e.g. 100 for percent)."""
    if ci["lo"] is None:
        return f"{ci['mean'] * scale:.{digits}f}"
    return f"{ci['mean'] * scale:.{digits}f} ± {(ci['hi'] - ci['mean']) * scale:.{digits}f}"
