"""examples/lightning_module.py: a compiled spec trains, logs, checkpoints and resumes under lightning.Trainer."""

from __future__ import annotations

import csv
import importlib.util
from pathlib import Path

import pytest
import torch

pytest.importorskip("lightning")

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("lightning_module", ROOT / "examples" / "lightning_module.py")
example = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(example)
SPEC = str(ROOT / "specs" / "spirals-rk4.yaml")
ARGS = ["--spec", SPEC, "--dataset", "spirals", "--lr", "0.01", "--optimizer", "adam", "--quiet"]


@pytest.mark.slow
def test_trains_logs_checkpoints_and_resumes(tmp_path):
    out = tmp_path / "run"
    assert example.main([*ARGS, "--epochs", "1", "--out", str(out)]) == 0
    (checkpoint,) = (out / "logs" / "version_0" / "checkpoints").glob("*.ckpt")
    rows = list(csv.DictReader(open(out / "logs" / "version_0" / "metrics.csv")))
    assert any(r.get("test_loss") for r in rows) and any(r.get("train_loss") for r in rows)
    restored = example.RkModule.load_from_checkpoint(checkpoint)
    state = torch.load(checkpoint, weights_only=False)["state_dict"]
    assert all(torch.equal(v, state[k]) for k, v in restored.state_dict().items())
    assert sum(p.numel() for p in restored.parameters()) == 1_818  # spirals-rk4's parameters
    assert example.main([*ARGS, "--epochs", "2", "--out", str(out), "--resume", str(checkpoint)]) == 0
    assert sorted(p.name for p in (out / "logs").glob("version_*/checkpoints/*.ckpt"))[-1].startswith("epoch=1")


def test_a_bad_spec_is_one_line(capsys, tmp_path):
    assert example.main(["--spec", str(tmp_path / "missing.yaml"), "--out", str(tmp_path)]) == 1
    assert capsys.readouterr().err == f"error: {tmp_path / 'missing.yaml'}: no such file\n"
