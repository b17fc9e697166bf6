"""Memory per stage of one network under several schemes: HO-ResNet's Table 2 (Luo et al. 2022) for the user's own spec.

Each scheme re-manifests the same spec (same evaluation budget, so the same parameters) with another
integrator; the numbers come from `rkcompile.analysis`. matplotlib is imported only when a plot is drawn.
"""

from __future__ import annotations

import io
import textwrap
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, cast

import torch

from rkcompile.errors import RkcompileError, SpecError
from rkcompile.files import write_file

if TYPE_CHECKING:
    from rkcompile.spec import Spec

__all__ = ["SCHEMES", "AS_WRITTEN", "SchemeMemory", "scheme_memory", "memory_plot"]

SCHEMES = ("euler", "midpoint", "rk4", "verner89")
#: The scheme name of a spec whose stages use different (or inline) integrators: the spec as written.
AS_WRITTEN = "as written"


@dataclass
class SchemeMemory:
    """Per-stage inference peak and saved-for-backward bytes for each scheme that fits the spec."""

    name: str
    batch: int
    stages: list[str]
    inference: dict[str, list[int]] = field(default_factory=dict)  # scheme -> bytes per stage
    saved: dict[str, list[int]] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)  # scheme -> why
    parameters: dict[str, int] = field(default_factory=dict)  # scheme -> total parameters
    evaluations: dict[str, int] = field(default_factory=dict)  # scheme -> evaluations of F in all stages
    own: str = ""  # the scheme the spec itself uses (its integrator's name, or "as written" for mixed stages)

    def summary(self) -> str:
        """Which schemes were plotted (the spec's own marked) and which were skipped, and why."""
        plotted = ", ".join(f"{k} (the spec's own)" if k == self.own else k for k in self.inference) or "none"
        text = f"plotted {plotted}"
        if self.skipped:
            text += "; skipped " + "; ".join(f"{k}: {v}" for k, v in self.skipped.items())
        return text


def scheme_memory(spec, schemes=SCHEMES, batch: int = 1, dtype: torch.dtype = torch.float32) -> SchemeMemory:
    """Analyze the spec once per scheme (every stage's integrator replaced); skip schemes that do not fit."""
    from rkcompile.analysis import analyze
    from rkcompile.compiler import build
    from rkcompile.load import load_spec

    spec = getattr(spec, "spec", spec)  # a compiled model carries its spec
    spec = load_spec(spec)
    out = SchemeMemory(spec.name, batch, [s.name or f"stage{i}" for i, s in enumerate(spec.stages)],
                       own=_own_scheme(spec))
    schemes = list(schemes) + ([out.own] if out.own not in schemes else [])  # the spec's own scheme, always
    for scheme in schemes:
        try:
            model = build(spec) if scheme == AS_WRITTEN else \
                build(spec, overrides={f"stages.{i}.integrator": scheme for i in range(len(spec.stages))})
        except RkcompileError as e:
            out.skipped[scheme] = _why(e)
            continue
        report = analyze(model, batch=batch, dtype=dtype)
        out.inference[scheme] = [r.inference_peak for r in report.stages]
        out.saved[scheme] = [r.saved_bytes for r in report.stages]
        out.parameters[scheme] = report.total.parameters
        out.evaluations[scheme] = sum(s.total_evaluations for s in cast("Spec", model.spec).stages)
    return out


def _own_scheme(spec) -> str:
    """The integrator every stage of the spec names, or AS_WRITTEN when stages differ or write a tableau inline."""
    names = {s.integrator if isinstance(s.integrator, str) else AS_WRITTEN for s in spec.stages}
    return names.pop() if len(names) == 1 else AS_WRITTEN


def memory_plot(spec, out_png: str | Path, schemes=SCHEMES, batch: int = 1,
                dtype: torch.dtype = torch.float32, *, inputs=(), data: SchemeMemory | None = None) -> Path:
    """Bar charts of inference peak and saved-for-backward per stage, one bar per scheme, written to a PNG;
    the spec's own scheme is always among them. `data`: the `scheme_memory` result, when already computed."""
    from rkcompile.render import check_writable

    out = Path(out_png)
    check_writable(out)
    if isinstance(schemes, str):
        schemes = [s.strip() for s in schemes.split(",") if s.strip()]
    data = data if data is not None else scheme_memory(spec, schemes, batch, dtype)
    if not data.inference:
        raise RkcompileError(f"no scheme fits {data.name}: " + "; ".join(f"{k}: {v}" for k, v in data.skipped.items()))
    plt = _pyplot()

    drawn = list(data.inference)
    fig, axes = plt.subplots(1, 2, figsize=(max(8.0, 3.0 + 1.6 * len(data.stages) * len(drawn) / 2), 4.8))
    try:
        for ax, values, title in ((axes[0], data.inference, "inference peak"),
                                  (axes[1], data.saved, "saved for backward")):
            _bars(ax, data.stages, drawn, values, title)
        lines = [f"{data.name}: memory per stage by scheme (batch {batch}; {_parameters(data)})"]
        if len(set(data.evaluations.values())) > 1:  # steps fixed (basis / shared weights): evaluations grow
            lines.append("evaluations of F: " + ", ".join(f"{k} {v}" for k, v in data.evaluations.items()))
        lines += [textwrap.shorten(f"skipped {k}: {v}", 120) for k, v in data.skipped.items()]
        fig.suptitle("\n".join(lines), fontsize=9)
        fig.tight_layout(rect=(0, 0, 1, 1 - 0.03 * (len(lines) - 1)))
        buffer = io.BytesIO()
        fig.savefig(buffer, format="png", dpi=110, metadata={"Software": None})
        write_file(out, buffer.getvalue(), inputs=inputs)
    finally:
        plt.close(fig)
    return out


def _pyplot():
    """matplotlib's pyplot on the Agg backend (no display), or a one-line error naming the missing package."""
    try:
        import matplotlib
    except ImportError:
        raise RkcompileError("memory plots need matplotlib: pip install matplotlib") from None
    matplotlib.use("Agg")
    from matplotlib import pyplot

    return pyplot


def _bars(ax, stages: list[str], schemes: list[str], values: dict[str, list[int]], title: str) -> None:
    """Grouped bars (stage groups, one bar per scheme) in MiB, each marked with its ratio to the first scheme."""
    width = 0.8 / len(schemes)
    base = values[schemes[0]]
    for k, scheme in enumerate(schemes):
        xs = [i + (k - (len(schemes) - 1) / 2) * width for i in range(len(stages))]
        mib = [v / 2**20 for v in values[scheme]]
        bars = ax.bar(xs, mib, width, label=scheme)
        for bar, v, b in zip(bars, values[scheme], base, strict=True):
            ax.annotate(f"×{v / b:.2f}" if b else "", (bar.get_x() + bar.get_width() / 2, bar.get_height()),
                        ha="center", va="bottom", fontsize=7)
    ax.set_xticks(range(len(stages)), stages)
    ax.set_ylabel("MiB")
    ax.set_title(f"{title} (ratios to {schemes[0]})", fontsize=9)
    ax.legend(fontsize=8)


def _parameters(data: SchemeMemory) -> str:
    """'2,074,058 parameters in every scheme', or each scheme's count when they differ."""
    counts = set(data.parameters.values())
    if len(counts) == 1:
        return f"{counts.pop():,} parameters in every scheme"
    return "parameters " + ", ".join(f"{k} {v:,}" for k, v in data.parameters.items())


def _why(error: RkcompileError) -> str:
    """A short reason: the field path and the message up to its first ';' or parenthesis."""
    text = error.message if isinstance(error, SpecError) else str(error)
    text = text.split(";")[0].split(" (")[0]
    if isinstance(error, SpecError) and error.path:
        text = f"{error.path}: {text}"
    return text
