"""Plots of linear stability regions, one panel per method side by side (matplotlib, imported only here)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from rkcompile.errors import RkcompileError
from rkcompile.files import write_figure
from rkcompile.stability import StabilityMethod, real_extent

__all__ = ["PLOT_FORMATS", "stability_plot", "window", "growth_grid"]

PLOT_FORMATS = ("png", "svg")


def window(method: StabilityMethod) -> tuple[float, float, float, float]:
    """(x_min, x_max, y_min, y_max) framing the region: its boundary locus plus a margin, clipped to |z| ≤ 12."""
    z = method.boundary_locus(360)
    z = z[np.isfinite(z) & (np.abs(z) < 12)]
    if not len(z):
        return -4.0, 1.0, -3.0, 3.0
    x0, x1 = min(z.real.min(), -1.0), max(z.real.max(), 0.5)
    y = max(np.abs(z.imag).max(), 1.0)
    pad = 0.15 * max(x1 - x0, 2 * y)
    return x0 - pad, x1 + pad, -y - pad, y + pad


def growth_grid(method: StabilityMethod, points: int = 400) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(xs, ys, growth) on the method's plotting window: what the plot fills where growth ≤ 1."""
    x0, x1, y0, y1 = window(method)
    xs, ys = np.linspace(x0, x1, points), np.linspace(y0, y1, points)
    return xs, ys, method.amplification(xs[None, :] + 1j * ys[:, None])


def stability_plot(methods: Sequence[StabilityMethod], out_path: str | Path, points: int = 400) -> Path:
    """Draw each method's region |growth(z)| ≤ 1 in the complex plane, with order, error coefficient, extent."""
    from rkcompile.memory_plot import _pyplot
    from rkcompile.render import check_writable

    out = Path(out_path)
    fmt = out.suffix.lower().lstrip(".")
    if fmt not in PLOT_FORMATS:
        raise RkcompileError(f"cannot plot to {out}: expected a .png or .svg file")
    check_writable(out)
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(methods), figsize=(4.2 * len(methods), 4.4), squeeze=False)
    try:
        for ax, method in zip(axes[0], methods, strict=True):
            xs, ys, growth = growth_grid(method, points)
            ax.contourf(xs, ys, growth, levels=[0, 1], colors=["#9ecae1"])
            ax.contour(xs, ys, growth, levels=[1], colors=["#08519c"], linewidths=1.2)
            ax.axhline(0, color="gray", lw=0.6)
            ax.axvline(0, color="gray", lw=0.6)
            r = real_extent(method)
            ax.plot([-r], [0], "o", color="#b2182b", ms=4)
            ax.set_aspect("equal")
            ax.set_xlabel("Re z  (z = hλ)")
            ax.set_ylabel("Im z")
            ax.set_title(f"{method.name}: order {method.order}\nprincipal error coefficient "
                         f"{method.error_coefficient:.3g}\nreal axis [−{r:.4f}, 0]", fontsize=9)
        fig.tight_layout()
        write_figure(fig, out, fmt)
    finally:
        plt.close(fig)
    return out
