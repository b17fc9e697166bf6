"""The analysis report: one row per unit in graph order, one per stage, and the total; printable as a table."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, replace

from rkcompile import naming
from rkcompile.texttable import text_table

__all__ = ["BlockReport", "Report", "combine", "human_bytes", "RELATIVE_FIELDS"]

RELATIVE_FIELDS = ("parameters", "inference_peak", "saved_bytes", "training_peak", "flops")
_MEASURED = ("measured_inference_peak", "measured_saved_bytes", "measured_training_peak")


@dataclass(frozen=True)
class BlockReport:
    """Costs of one unit (stem, a stage's entry, a block, the head), of a stage, or of the whole network.

    Bytes are physical storage bytes. `inference_peak` and `training_peak` are peaks (max over the row's
    nodes); `parameters`, `saved_bytes` and `flops` are sums. `relative` holds the same figures divided by
    those of the spec's Euler manifestation (rows that exist in both; None for blocks, which differ).
    """

    label: str
    stage: int | None
    block: int | str | None
    parameters: int
    parameter_bytes: int
    inference_peak: int
    saved_bytes: int
    training_peak: int
    flops: int
    relative: Mapping[str, float | None] | None = None
    measured_inference_peak: int | None = None
    measured_saved_bytes: int | None = None
    measured_training_peak: int | None = None
    recompute_flops: int = 0  # FLOPs run again in backward (checkpointed groups)


def combine(label: str, stage: int | None, rows: list[BlockReport], parameters: int = 0,
            parameter_bytes: int = 0) -> BlockReport:
    """Aggregate rows into a stage or total row: sums of counts, max of peaks, plus parameters owned directly."""
    def peak(field):
        values = [getattr(r, field) for r in rows]
        return None if not values or None in values else max(values)

    def total(field):
        values = [getattr(r, field) for r in rows]
        return None if None in values else sum(values)

    return BlockReport(
        label, stage, None,
        parameters=sum(r.parameters for r in rows) + parameters,
        parameter_bytes=sum(r.parameter_bytes for r in rows) + parameter_bytes,
        inference_peak=max((r.inference_peak for r in rows), default=0),
        saved_bytes=sum(r.saved_bytes for r in rows),
        training_peak=max((r.training_peak for r in rows), default=0),
        flops=sum(r.flops for r in rows),
        recompute_flops=sum(r.recompute_flops for r in rows),
        measured_inference_peak=peak("measured_inference_peak"),
        measured_saved_bytes=total("measured_saved_bytes"),
        measured_training_peak=peak("measured_training_peak"),
    )


@dataclass(frozen=True)
class Report:
    """Parameters, memory and FLOPs of a compiled network at one batch size and dtype."""

    name: str
    batch: int
    dtype: str
    units: tuple[BlockReport, ...]
    stages: tuple[BlockReport, ...]
    total: BlockReport
    #: layers compiled as one node because they could not be traced: their temporaries are hidden from the prediction
    hidden: tuple[str, ...] = ()
    #: each stage's `name` (None if unnamed): tables show it in place of `stage{n}`
    stage_names: tuple[str | None, ...] = ()

    @property
    def rows(self) -> tuple[BlockReport, ...]:
        """Units, then stages, then the total."""
        return (*self.units, *self.stages, self.total)

    def row(self, label: str) -> BlockReport:
        """The row with this label ("stem", "stage0.block3", "stage1", "total", ...)."""
        for r in self.rows:
            if r.label == label:
                return r
        raise KeyError(f"no row '{label}'; rows are {[r.label for r in self.rows]}")

    def with_relative(self, euler: Report) -> Report:
        """This report with `relative` ratios to `euler` filled in for rows present in both (blocks excepted)."""
        def ratios(r: BlockReport) -> BlockReport:
            if ".block" in r.label:
                return r
            try:
                e = euler.row(r.label)
            except KeyError:
                return r
            rel = {f: (getattr(r, f) / getattr(e, f) if getattr(e, f) else None) for f in RELATIVE_FIELDS}
            return replace(r, relative=rel)

        return replace(self, units=tuple(map(ratios, self.units)), stages=tuple(map(ratios, self.stages)),
                       total=ratios(self.total))

    def table(self) -> str:
        """A fixed-width text table; measured columns appear when measured, ratios to Euler when known."""
        measured = self.total.measured_saved_bytes is not None
        head = ["unit", "params", "inference", "saved", "training", "MFLOP"]
        if measured:
            head += ["meas. inf", "meas. saved", "meas. train"]
        head += ["x euler at equal evaluations (inf/saved/train)"]
        lines = []
        for r in self.rows:
            cells = [naming.display(r.label, self.stage_names), f"{r.parameters:,}", human_bytes(r.inference_peak), human_bytes(r.saved_bytes),
                     human_bytes(r.training_peak), f"{r.flops / 1e6:,.1f}"]
            if measured:
                cells += [human_bytes(getattr(r, f)) for f in _MEASURED]
            rel = r.relative or {}
            cells.append("/".join(_ratio(rel.get(f)) for f in ("inference_peak", "saved_bytes", "training_peak"))
                         if rel else "")
            lines.append(cells)
        title = f"{self.name}  (batch {self.batch}, {self.dtype})"
        notes = [f"note: {len(self.hidden)} untraceable module call(s) ran as one node each, so the temporaries "
                 f"inside them are hidden from the prediction: {', '.join(self.hidden[:3])}"
                 f"{', ...' if len(self.hidden) > 3 else ''}"] if self.hidden else []
        return "\n".join([title, text_table(lines, head, numeric=True), *notes])

    def to_dict(self) -> dict:
        """Plain data (ints, floats, strings, lists, dicts) for JSON."""
        return {"name": self.name, "batch": self.batch, "dtype": self.dtype,
                "units": [_plain(r) for r in self.units], "stages": [_plain(r) for r in self.stages],
                "total": _plain(self.total), "hidden": list(self.hidden)}

    def __str__(self) -> str:
        return self.table()


def _plain(r: BlockReport) -> dict:
    d = asdict(r)
    d["relative"] = dict(r.relative) if r.relative is not None else None
    return d


def _ratio(x: float | None) -> str:
    return "-" if x is None else f"{x:.2f}"


def human_bytes(n: int | None) -> str:
    """Bytes in B, KiB, MiB or GiB; '-' for None."""
    if n is None:
        return "-"
    for unit, scale in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if abs(n) >= scale:
            return f"{n / scale:.2f} {unit}"
    return f"{n} B"
