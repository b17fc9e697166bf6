"""The analysis report: one row per unit in graph order, one per stage, and the total; printable as a table.

Every column is a per-row quantity (what this unit, stage or network needs), except `running_peak`, which
says so in its name: the network's training activation peak up to the end of the row.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, replace

from rkcompile import naming
from rkcompile.texttable import text_table

__all__ = ["BlockReport", "Report", "combine", "human_bytes", "RELATIVE_FIELDS", "RECORD_FIELDS"]

RELATIVE_FIELDS = ("parameters", "inference_peak", "saved_bytes", "training_peak", "training_total", "flops")
_MEASURED = ("measured_inference_peak", "measured_saved_bytes", "measured_training_peak")
#: The fields of one machine-readable record (`Report.records`, `rkcompile analyze --json/--csv`), in order.
RECORD_FIELDS = ("kind", "label", "stage", "block", "evaluations", "parameters", "parameter_bytes", "buffer_bytes",
                 "gradient_bytes", "optimizer_bytes", "inference_peak", "saved_bytes", "training_peak",
                 "running_peak", "training_total", "flops", "recompute_flops",
                 *(f"ratio_{f}" for f in RELATIVE_FIELDS), *_MEASURED)


@dataclass(frozen=True)
class BlockReport:
    """Costs of one unit (stem, a stage's entry, a block, the head), of a stage, or of the whole network.

    Bytes are physical storage bytes. Per row: `parameters` and their bytes, `buffer_bytes` (batch-norm
    statistics, frozen steps), `gradient_bytes` and `optimizer_bytes` (its parameters' gradients and optimizer
    state), `inference_peak` (live activations at the row's worst node, no autograd), `saved_bytes` (activations
    the row keeps for backward), `training_peak` (the row's worst node in a training forward: what it has saved so
    far plus its live activations, above what earlier rows keep for backward), `flops` and `evaluations` (of F).
    `running_peak` is the network's training activation peak from the input to the end of the row.
    `relative` holds ratios to the Euler baseline (`Report.baseline`): for a block, to the Euler blocks that
    evaluate the same F's (an RK4 block against four Euler blocks).
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
    evaluations: int = 0
    running_peak: int = 0
    buffer_bytes: int = 0
    gradient_bytes: int = 0
    optimizer_bytes: int = 0

    @property
    def weight_bytes(self) -> int:
        """Parameters and buffers."""
        return self.parameter_bytes + self.buffer_bytes

    @property
    def training_total(self) -> int:
        """Training peak of activations plus weights, gradients and optimizer state: what a training step needs."""
        return self.training_peak + self.weight_bytes + self.gradient_bytes + self.optimizer_bytes


def combine(label: str, stage: int | None, rows: list[BlockReport], parameters: int = 0,
            parameter_bytes: int = 0, *, buffer_bytes: int = 0, gradient_bytes: int = 0,
            optimizer_bytes: int = 0) -> BlockReport:
    """Aggregate rows (in network order) into a stage or total row, plus what it owns directly.

    Sums of counts and bytes, max of inference peaks; the training peak of consecutive rows is the worst of each
    row's own peak on top of what the rows before it (in the group) saved.
    """
    def peak(field):
        values = [getattr(r, field) for r in rows]
        return None if not values or None in values else max(values)

    def total(field):
        values = [getattr(r, field) for r in rows]
        return None if None in values else sum(values)

    def training(field, saved_field):
        if any(getattr(r, field) is None or getattr(r, saved_field) is None for r in rows):
            return None
        worst, before = 0, 0
        for r in rows:
            worst = max(worst, before + getattr(r, field))
            before += getattr(r, saved_field)
        return worst

    return BlockReport(
        label, stage, None,
        parameters=sum(r.parameters for r in rows) + parameters,
        parameter_bytes=sum(r.parameter_bytes for r in rows) + parameter_bytes,
        buffer_bytes=sum(r.buffer_bytes for r in rows) + buffer_bytes,
        gradient_bytes=sum(r.gradient_bytes for r in rows) + gradient_bytes,
        optimizer_bytes=sum(r.optimizer_bytes for r in rows) + optimizer_bytes,
        inference_peak=max((r.inference_peak for r in rows), default=0),
        saved_bytes=sum(r.saved_bytes for r in rows),
        training_peak=training("training_peak", "saved_bytes") or 0,
        running_peak=max((r.running_peak for r in rows), default=0),
        flops=sum(r.flops for r in rows),
        evaluations=sum(r.evaluations for r in rows),
        recompute_flops=sum(r.recompute_flops for r in rows),
        measured_inference_peak=peak("measured_inference_peak"),
        measured_saved_bytes=total("measured_saved_bytes"),
        measured_training_peak=training("measured_training_peak", "measured_saved_bytes") if rows else None,
    )


@dataclass(frozen=True)
class Report:
    """Parameters, memory and FLOPs of a compiled network at one batch size, dtype and optimizer."""

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
    optimizer: str = "sgd-momentum"
    #: what the ratios compare with (one sentence), None before `with_relative`
    baseline: str | None = None

    @property
    def rows(self) -> tuple[BlockReport, ...]:
        """Units, then stages, then the total."""
        return (*self.units, *self.stages, self.total)

    def network_order(self) -> tuple[BlockReport, ...]:
        """Units in network order, each stage's row after its units, the total last."""
        out: list[BlockReport] = []
        done: set[int] = set()
        by_stage = {s.stage: s for s in self.stages}
        for k, unit in enumerate(self.units):
            out.append(unit)
            following = self.units[k + 1].stage if k + 1 < len(self.units) else None
            if unit.stage is not None and following != unit.stage and unit.stage in by_stage:
                out.append(by_stage[unit.stage])
                done.add(unit.stage)
        out += [s for s in self.stages if s.stage not in done]
        return (*out, self.total)

    def row(self, label: str) -> BlockReport:
        """The row with this label ("stem", "stage0.block3", "stage1", "total", ...)."""
        for r in self.rows:
            if r.label == label:
                return r
        raise KeyError(f"no row '{label}'; rows are {[r.label for r in self.rows]}")

    def with_relative(self, euler: Report, baseline: str | None = None) -> Report:
        """This report with `relative` ratios to `euler` filled in for every row.

        A row present in both is compared with its namesake; a block with the Euler blocks that evaluate the
        same F's (by evaluation count within the stage: RK4's block 1 against Euler's blocks 4 to 7).
        """
        counterpart = _counterparts(self, euler)

        def ratios(r: BlockReport) -> BlockReport:
            e = counterpart.get(r.label)
            if e is None:
                return r
            rel = {f: (getattr(r, f) / getattr(e, f) if getattr(e, f) else None) for f in RELATIVE_FIELDS}
            return replace(r, relative=rel)

        return replace(self, units=tuple(map(ratios, self.units)), stages=tuple(map(ratios, self.stages)),
                       total=ratios(self.total), baseline=baseline)

    def table(self) -> str:
        """A fixed-width text table: a title, what the ratios compare with, the rows, and a legend."""
        measured = self.total.measured_saved_bytes is not None
        ratios = self.baseline is not None
        head = ["unit", "evals", "params", "weights", "inference", "saved", "training", "peak so far", "train total",
                "MFLOP"]
        if measured:
            head += ["meas. inference", "meas. saved", "meas. training"]
        if ratios:
            head += ["inference ×euler", "saved ×euler", "training ×euler", "train total ×euler"]
        lines = []
        for r in self.network_order():
            label = naming.display(r.label, self.stage_names)
            label = f"{label} (whole stage)" if r in self.stages else label
            cells = [label, r.evaluations or "-", f"{r.parameters:,}", human_bytes(r.weight_bytes),
                     human_bytes(r.inference_peak), human_bytes(r.saved_bytes), human_bytes(r.training_peak),
                     human_bytes(r.running_peak), human_bytes(r.training_total), f"{r.flops / 1e6:,.1f}"]
            if measured:
                cells += [human_bytes(getattr(r, f)) for f in _MEASURED]
            if ratios:
                rel = r.relative or {}
                cells += [_ratio(rel.get(f)) for f in ("inference_peak", "saved_bytes", "training_peak",
                                                       "training_total")]
            lines.append(cells)
        title = f"{self.name}  (batch {self.batch}, {self.dtype}, optimizer {self.optimizer})"
        intro = [f"ratios (×euler) are {self.baseline}"] if self.baseline else [
            "no ratio columns: the network is forward Euler throughout, so it is its own baseline"
        ] if self.total.relative is not None else []
        notes = [f"note: {len(self.hidden)} untraceable module call(s) ran as one node each, so the temporaries "
                 f"inside them are hidden from the prediction: {', '.join(self.hidden[:3])}"
                 f"{', ...' if len(self.hidden) > 3 else ''}"] if self.hidden else []
        return "\n".join([title, *intro, text_table(lines, head, numeric=True), *self.legend(ratios), *notes])

    def legend(self, ratios: bool = True) -> list[str]:
        """What each column of the table means, one short line each."""
        from rkcompile.analysis.optimizer import describe

        lines = [
            "evals: evaluations of F; weights: parameters and buffers; bytes are per row, not cumulative:",
            "  inference    peak of live activations while the row runs, without autograd",
            "  saved        activations the row keeps for backward",
            "  training     the row's peak in a training forward: what it has saved so far and its live"
            " activations, on top of what earlier rows keep",
            "  peak so far  the network's training activation peak from the input to the end of the row"
            " (a running peak)",
            f"  train total  training + weights + gradients + optimizer state ({describe(self.optimizer)});"
            " the total row answers 'will a training step fit'",
        ]
        if ratios:
            lines.append("  ×euler       this row over the baseline's (a block: over the Euler blocks of its"
                         " evaluations); '-' where the baseline has 0")
        return lines

    def records(self) -> list[dict]:
        """One flat record per row (units, stages, total; network order), with the fields of RECORD_FIELDS."""
        out = []
        for r in self.network_order():
            kind = "total" if r is self.total else "stage" if r in self.stages else "unit"
            record = {"kind": kind, **{f: getattr(r, f) for f in RECORD_FIELDS if hasattr(r, f)}}
            rel = r.relative or {}
            record.update({f"ratio_{f}": rel.get(f) for f in RELATIVE_FIELDS})
            out.append({f: record.get(f) for f in RECORD_FIELDS})
        return out

    def to_dict(self) -> dict:
        """Plain data (ints, floats, strings, lists, dicts) for JSON."""
        return {"name": self.name, "batch": self.batch, "dtype": self.dtype, "optimizer": self.optimizer,
                "baseline": self.baseline, "fields": list(RECORD_FIELDS),
                "units": [_plain(r) for r in self.units], "stages": [_plain(r) for r in self.stages],
                "total": _plain(self.total), "hidden": list(self.hidden)}

    def __str__(self) -> str:
        return self.table()


def _counterparts(report: Report, euler: Report) -> dict[str, BlockReport]:
    """Each row's label → the baseline row (or the combination of baseline blocks) it is compared with."""
    theirs = {r.label: r for r in euler.rows}
    out = {r.label: theirs[r.label] for r in report.rows if r.label in theirs and ".block" not in r.label}
    for s in {u.stage for u in report.units if u.stage is not None}:
        blocks = [u for u in euler.units if u.stage == s and naming.parse(u.label).kind == "block"]
        first = 0
        for u in report.units:
            if u.stage != s or naming.parse(u.label).kind != "block":
                continue
            group = blocks[first:first + u.evaluations]
            if u.evaluations and len(group) == u.evaluations and all(b.evaluations == 1 for b in group):
                out[u.label] = group[0] if len(group) == 1 else combine(u.label, s, group)
            first += u.evaluations
    return out


def _plain(r: BlockReport) -> dict:
    d = asdict(r)
    d["relative"] = dict(r.relative) if r.relative is not None else None
    d["weight_bytes"], d["training_total"] = r.weight_bytes, r.training_total
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
