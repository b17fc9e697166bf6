"""The memory timeline plot: live bytes per graph node, forward then backward, with unit boundaries (matplotlib)."""

from __future__ import annotations

from pathlib import Path

from rkcompile.analysis.timeline import Timeline
from rkcompile.errors import RkcompileError
from rkcompile.files import write_figure

__all__ = ["timeline_plot"]


def timeline_plot(line: Timeline, out_path: str | Path) -> Path:
    """Plot predicted (and measured) bytes in execution order, forward left and backward right, to PNG or SVG."""
    from rkcompile.memory_plot import _pyplot
    from rkcompile.render import check_writable

    out = Path(out_path)
    fmt = out.suffix.lower().lstrip(".")
    if fmt not in ("png", "svg"):
        raise RkcompileError(f"cannot plot the timeline to {out}: expected a .png or .svg file")
    check_writable(out)
    plt = _pyplot()
    n = len(line.nodes)
    mib = 2.0**20
    fwd, bwd = range(n), range(n, 2 * n)
    fig, ax = plt.subplots(figsize=(max(9.0, min(24.0, n / 25)), 4.8))
    try:
        ax.plot(fwd, [v / mib for v in line.inference], color="#2166ac", lw=1.2, label="inference live (predicted)")
        ax.plot(fwd, [v / mib for v in line.forward], color="#b2182b", lw=1.2, label="training forward (predicted)")
        ax.plot(bwd, [v / mib for v in line.backward], color="#762a83", lw=1.2, label="backward (predicted)")
        if line.measured_forward is not None:
            assert line.measured_inference is not None and line.measured_backward is not None  # measured together
            ax.plot(fwd, [v / mib for v in line.measured_inference], "o", color="#2166ac", ms=2, label="measured")
            ax.plot(fwd, [v / mib for v in line.measured_forward], "o", color="#b2182b", ms=2)
            xs = [x for x, v in zip(bwd, line.measured_backward, strict=True) if v is not None]
            ax.plot(xs, [v / mib for v in line.measured_backward if v is not None], "o", color="#762a83", ms=2)
        top = max(line.training_peak, 1) / mib
        for i, unit in line.boundaries():
            stage_start = not unit.split(".")[-1].startswith("block") or unit.endswith(".block0")
            for x in (i, 2 * n - i):
                ax.axvline(x - 0.5, color="gray", lw=0.8 if stage_start else 0.3, alpha=0.7)
            if stage_start:
                ax.text(i, top * 1.02, unit.replace(".block0", ""), rotation=90, fontsize=7, va="bottom")
        ax.axvline(n - 0.5, color="black", lw=1.2)
        ax.text(n, top * 0.5, " backward →", fontsize=8)
        ax.set_xlim(-1, 2 * n)
        ax.set_ylim(0, top * 1.25)
        ax.set_xlabel("graph node in execution order (forward), then in reverse (backward)")
        ax.set_ylabel("MiB of activations")
        ax.set_title(f"{line.name}: memory timeline (batch {line.batch}, {line.dtype}); inference peak "
                     f"{line.inference_peak / mib:.2f} MiB, training peak {line.training_peak / mib:.2f} MiB",
                     fontsize=9)
        ax.legend(fontsize=8, loc="lower center")
        fig.tight_layout()
        write_figure(fig, out, fmt)
    finally:
        plt.close(fig)
    return out
