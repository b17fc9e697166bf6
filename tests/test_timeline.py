"""The memory timeline: its peaks are the analysis' peaks, measured curves follow the prediction, the plot and CLI."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from rkcompile.analysis import analyze
from rkcompile.analysis.timeline import timeline
from rkcompile.cli import cli
from rkcompile.compiler import build

SPECS = Path(__file__).parent.parent / "specs"


@pytest.mark.parametrize("name, batch", [("continuousnet-2-2-2", 1), ("ho-resnet58-rk4", 2), ("spirals-rk4", 3)])
def test_peaks_equal_the_analysis_peaks(name, batch):
    model = build(SPECS / f"{name}.yaml")
    report = analyze(model, batch=batch)
    line = timeline(model, batch=batch)
    assert line.inference_peak == report.total.inference_peak
    assert max(line.forward) == report.total.training_peak
    assert len(line.nodes) == len(line.backward) == len([n for n in model.graph.nodes if n.op != "output"])
    assert [label for _, label in line.boundaries()] == [u.label for u in report.units]
    # backward frees what forward saved: it ends far below where it starts
    assert line.backward[-1] < 0.2 * line.backward[0]


def test_measured_curves_follow_the_prediction():
    model = build(SPECS / "continuousnet-2-2-2.yaml")
    line = timeline(model, batch=2, measure=True)
    assert line.measured_inference == line.inference  # the analysis is exact here (0.00% in analyze --measure)
    assert line.measured_forward == line.forward
    pairs = [(p, m) for p, m in zip(line.backward, line.measured_backward, strict=True) if m is not None]
    assert len(pairs) > 0.9 * len(line.backward)
    measured_peak = max(m for _, m in pairs)
    assert abs(max(line.backward) - measured_peak) <= 0.02 * measured_peak
    predicted, measured = np.array(pairs, dtype=float).T
    assert np.corrcoef(predicted, measured)[0, 1] > 0.99


def test_cli_timeline(tmp_path):
    out = tmp_path / "timeline.png"
    result = CliRunner().invoke(cli, ["analyze", str(SPECS / "spirals-rk4.yaml"), "--batch", "4", "--timeline", str(out)])
    assert result.exit_code == 0, result.output
    report = analyze(SPECS / "spirals-rk4.yaml", batch=4)
    assert f"inference {report.total.inference_peak:,} B" in result.stdout
    from matplotlib.image import imread

    assert len(np.unique(imread(out)[..., :3].reshape(-1, 3), axis=0)) > 20
    bad = CliRunner().invoke(cli, ["analyze", str(SPECS / "spirals-rk4.yaml"), "--timeline", str(tmp_path / "t.jpg")])
    assert bad.exit_code == 1 and bad.stdout == ""
    assert bad.stderr == f"error: cannot plot the timeline to {tmp_path / 't.jpg'}: expected a .png or .svg file\n"
