"""The numbers a drawing shows beside each block, taken from `rkcompile.analysis`, and their human units.

The renderer only reads the analysis report; it never measures anything itself. `measure` is the one
adapter between the two, so a change in the report's field names is mended here alone.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import cast

import torch

from rkcompile.analysis.report import human_bytes

__all__ = ["Numbers", "Measures", "measure", "count", "size", "flops", "spread"]

FIELDS = ("parameters", "parameter_bytes", "inference_peak", "saved_bytes", "training_peak", "flops")


@dataclass(frozen=True)
class Numbers:
    """One row of the analysis report (None where the analysis gives no value)."""

    parameters: int | None = None
    parameter_bytes: int | None = None
    inference_peak: int | None = None
    saved_bytes: int | None = None
    training_peak: int | None = None
    flops: int | None = None


@dataclass
class Measures:
    """Rows of the report by unit label ("stem", "stage0.block3", ...), by stage index, and the total."""

    blocks: dict[str, Numbers] = field(default_factory=dict)
    stages: dict[int, Numbers] = field(default_factory=dict)
    total: Numbers = field(default_factory=Numbers)
    batch: int = 1
    dtype: str = "float32"


def measure(model, batch: int = 1, dtype: torch.dtype = torch.float32) -> Measures:
    """Run `rkcompile.analysis.analyze` on the model and keep its unit, stage and total rows."""
    from rkcompile.analysis import analyze

    report = analyze(model, batch=batch, dtype=dtype)
    out = Measures(batch=batch, dtype=report.dtype)
    out.blocks = {row.label: _numbers(row) for row in report.units}
    out.stages = {cast(int, row.stage): _numbers(row) for row in report.stages}  # stage rows always carry their stage
    out.total = _numbers(report.total)
    return out


def _numbers(row) -> Numbers:
    return Numbers(**{f: _int(getattr(row, f, None)) for f in FIELDS})


def _int(value) -> int | None:
    return None if value is None else int(value)


def count(n: int | None) -> str:
    """A parameter count in K/M/G: 252, 36.9K, 2.07M."""
    return _scaled(n, 1000, ["", "K", "M", "G", "T"])


def flops(n: int | None) -> str:
    """A FLOP count in K/M/G/T."""
    return _scaled(n, 1000, ["", "K", "M", "G", "T"])


def size(n: int | None) -> str:
    """A byte count in B/KiB/MiB/GiB, written as the analysis report writes it."""
    return "–" if n is None else human_bytes(n)


def spread(values: list[int | None], unit) -> str:
    """One figure, or the range 'smallest–largest' of figures that differ, in `unit`'s format (None: unknown).

    A unit both ends share is written once: `96.00–128.00 KiB`, `2.07–2.10M`; otherwise `768 B–1.50 KiB`.
    """
    known = [v for v in values if v is not None]
    if not known:
        return unit(None)
    low, high = unit(min(known)), unit(max(known))
    if low == high:
        return low
    (a, suffix), (b, other) = _split(low), _split(high)
    return f"{a}–{b}{suffix}" if suffix == other and suffix else f"{low}–{high}"


def _split(text: str) -> tuple[str, str]:
    """'96.00 KiB' → ('96.00', ' KiB'); '2.07M' → ('2.07', 'M'); '252' → ('252', '')."""
    number = text.split(" ")[0].rstrip("KMGT")
    return number, text[len(number):]


def _scaled(n: int | None, base: int, units: list[str]) -> str:
    if n is None:
        return "–"
    value, unit = float(n), 0
    while abs(value) >= base and unit < len(units) - 1:
        value /= base
        unit += 1
    if unit == 0:
        return f"{int(n)}{units[0]}"
    digits = 2 if abs(value) < 10 else (1 if abs(value) < 100 else 0)
    return f"{value:.{digits}f}{units[unit]}"
