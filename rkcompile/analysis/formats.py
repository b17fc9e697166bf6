"""Machine-readable analysis reports: JSON and CSV, one flat record per row (units, stages, total).

The fields are `report.RECORD_FIELDS`, documented in the README ("Memory: what each scheme really costs", Records); bytes are integers,
ratios floats (null / empty where the baseline has 0 or no counterpart).
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Sequence

from rkcompile.analysis.report import RECORD_FIELDS, Report

__all__ = ["to_json", "to_csv"]


def to_json(report: Report, notes: Sequence[str] = ()) -> str:
    """The report as one JSON object: what it was computed for, the baseline, and `records` in network order."""
    return json.dumps({"name": report.name, "batch": report.batch, "dtype": report.dtype,
                       "optimizer": report.optimizer, "baseline": report.baseline, "fields": list(RECORD_FIELDS),
                       "records": report.records(), "hidden": list(report.hidden), "notes": list(notes)}, indent=2)


def to_csv(report: Report) -> str:
    """The report as CSV: a header of RECORD_FIELDS, then one line per row in network order."""
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=list(RECORD_FIELDS), lineterminator="\n")
    writer.writeheader()
    for record in report.records():
        writer.writerow({k: ("" if v is None else v) for k, v in record.items()})
    return out.getvalue()
