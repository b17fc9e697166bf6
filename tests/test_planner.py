"""The checkpoint planner: plans fit their budget when measured, cost the least recomputation, bad budgets."""

from __future__ import annotations

import itertools

import pytest
import torch
from click.testing import CliRunner

from rkcompile import build
from rkcompile.analysis import analyze, predict
from rkcompile.analysis.checkpoint import checkpoint_costs
from rkcompile.analysis.measure import measure_step
from rkcompile.analysis.report import human_bytes
from rkcompile.cli import cli
from rkcompile.errors import RkcompileError
from rkcompile.planner import parse_bytes, plan

BATCH = 4
SPECS = {
    "ho-resnet58-euler": ("specs/ho-resnet58-euler.yaml", {"input.height": 8, "input.width": 8, "stem.channels": 8,
                                                           "stages.0.channels": 8, "stages.0.evaluations": 12}),
    "continuousnet-2-2-2": ("specs/continuousnet-2-2-2.yaml", {"input.height": 8, "input.width": 8}),
}


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def small(name: str, **extra):
    path, overrides = SPECS[name]
    return build(path, {**overrides, **extra})


def with_plan(name: str, chosen):
    path, overrides = SPECS[name]
    return build(path, {**overrides, **chosen.overrides()})


@pytest.mark.parametrize("name", SPECS)
@pytest.mark.parametrize("fraction", [0.1, 0.5, 0.9])
def test_plan_fits_its_budget_when_measured(name, fraction):
    first = plan(small(name), 10**12, batch=BATCH)
    budget = int(first.minimum + fraction * (first.training_peak_without - first.minimum))
    chosen = plan(small(name), budget, batch=BATCH)
    assert chosen.groups and chosen.training_peak <= budget
    measured = measure_step(with_plan(name, chosen), BATCH)["training_peak"]
    assert measured <= budget
    assert measured == pytest.approx(chosen.training_peak, rel=0.05)
    # the analysis of the checkpointed model says the same, and --measure confirms it
    report = analyze(with_plan(name, chosen), batch=BATCH, measure=True)
    assert report.total.training_peak == chosen.training_peak
    assert report.total.measured_training_peak == pytest.approx(report.total.training_peak, rel=0.05)
    assert report.total.recompute_flops == chosen.recompute_flops > 0


def test_no_checkpoint_when_the_budget_already_fits():
    chosen = plan(small("ho-resnet58-euler"), "1 GiB", batch=BATCH)
    assert chosen.groups == () and chosen.recompute_flops == 0
    assert chosen.training_peak == chosen.training_peak_without == analyze(small("ho-resnet58-euler"),
                                                                           batch=BATCH).total.training_peak


def _plans(blocks: int):
    """Every choice of checkpoint groups over `blocks` consecutive blocks: segments, each recomputed or not."""
    for cuts in itertools.product([0, 1], repeat=blocks - 1):
        segments, start = [], 0
        for b, cut in enumerate(cuts, start=1):
            if cut:
                segments.append((start, b - 1))
                start = b
        segments.append((start, blocks - 1))
        for marks in itertools.product([False, True], repeat=len(segments)):
            yield [s for s, m in zip(segments, marks, strict=True) if m]


def test_least_recomputation_against_every_plan():
    """On 6 Euler blocks, no plan whose predicted peak fits recomputes fewer FLOPs than the planner's."""
    model = small("ho-resnet58-euler", **{"stages.0.evaluations": 6})
    plain = predict(small("ho-resnet58-euler", **{"stages.0.evaluations": 6}), BATCH)
    first = plan(model, 10**12, batch=BATCH)
    for fraction in (0.2, 0.6):
        budget = int(first.minimum + fraction * (first.training_peak_without - first.minimum))
        chosen = plan(model, budget, batch=BATCH)
        best = min(sum(c.recompute_flops.values()) for groups in _plans(6)
                   if (c := checkpoint_costs(plain, [(0, a, b) for a, b in groups])).training_peak <= budget)
        assert chosen.recompute_flops == best


@pytest.mark.parametrize("name", SPECS)
def test_checkpointing_changes_no_number(name):
    """Outputs, gradients and batch-norm running statistics equal those without checkpointing."""
    plain = small(name)
    groups = {"stages.0.checkpoint": [[0, 0], [1, 1]]}
    if name == "ho-resnet58-euler":
        groups = {"stages.0.checkpoint": [[0, 2], [4, 4], [6, 11]]}
    checked = small(name, **groups)
    assert list(checked.state_dict()) == list(plain.state_dict())
    checked.load_state_dict(plain.state_dict())
    plain.double().train()
    checked.double().train()
    x = torch.randn(BATCH, 3, 8, 8, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    for model in (plain, checked):
        model(x).square().sum().backward()
    for (key, a), b in zip(plain.state_dict().items(), checked.state_dict().values(), strict=True):
        torch.testing.assert_close(b, a, rtol=0, atol=0, msg=key)  # running statistics counted once
    for (key, p), q in zip(plain.named_parameters(), checked.parameters(), strict=True):
        torch.testing.assert_close(q.grad, p.grad, rtol=0, atol=1e-12, msg=key)
    plain.eval()
    checked.eval()
    with torch.no_grad():
        torch.testing.assert_close(checked(x), plain(x), rtol=0, atol=0)
    assert "checkpoint_group" in checked.code


def test_budget_below_the_minimum_states_it():
    first = plan(small("ho-resnet58-euler"), 10**12, batch=BATCH)
    with pytest.raises(RkcompileError) as info:
        plan(small("ho-resnet58-euler"), first.minimum - 1, batch=BATCH)
    message = str(info.value)
    assert "below the smallest training peak" in message and human_bytes(first.minimum) in message
    assert f"{first.minimum:,} bytes" in message
    assert plan(small("ho-resnet58-euler"), first.minimum, batch=BATCH).training_peak <= first.minimum


@pytest.mark.parametrize("text, expected", [("2GiB", 2 * 2**30), ("512 MiB", 512 * 2**20), ("1.5GB", 1_500_000_000),
                                            ("4096", 4096), ("3kib", 3072)])
def test_parse_bytes(text, expected):
    assert parse_bytes(text) == expected


@pytest.mark.parametrize("text, message", [
    ("2 parsecs", "budget '2 parsecs' is not a size such as 2GiB, 512MiB, 1.5GB or a number of bytes"),
    ("GiB", "budget 'GiB' is not a size"),
    ("0", "budget must be positive, found '0'"),
    ("-1GiB", "budget '-1GiB' is not a size"),
])
def test_bad_budgets(text, message):
    with pytest.raises(RkcompileError, match=message.replace("(", r"\(").replace(".", r"\.")):
        parse_bytes(text)


def test_cli_plan_writes_a_spec_that_check_and_draw_show(tmp_path):
    path, overrides = SPECS["ho-resnet58-euler"]
    sets = [a for k, v in overrides.items() for a in ("--set", f"{k}={v}")]
    runner = CliRunner()
    out = tmp_path / "planned.yaml"
    result = runner.invoke(cli, ["plan", path, "--budget", "200KiB", "--batch", str(BATCH), "-o", str(out), *sets])
    assert result.exit_code == 0, result.output
    assert "recomputed in backward" in result.output and f"wrote {out}" in result.output
    checked = runner.invoke(cli, ["check", str(out)])
    assert checked.exit_code == 0 and "checkpoint" in checked.output.splitlines()[1]
    dot = tmp_path / "planned.dot"
    drawn = runner.invoke(cli, ["draw", str(out), "-o", str(dot), "--batch", str(BATCH)])
    assert drawn.exit_code == 0, drawn.output
    assert "(recomputed in backward)" in dot.read_text()
    saved = tmp_path / "planned.pt"
    assert runner.invoke(cli, ["build", str(out), "-o", str(saved)]).exit_code == 0
    from rkcompile.artifact import load

    assert load(saved).spec.stages[0].checkpoint == build(str(out)).spec.stages[0].checkpoint


def test_cli_plan_errors_are_one_line():
    runner = CliRunner()
    result = runner.invoke(cli, ["plan", "specs/ho-resnet58-euler.yaml", "--budget", "1KiB", "--batch", "2"])
    assert result.exit_code == 1
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: budget 1.00 KiB is below the smallest training peak")
    result = runner.invoke(cli, ["plan", "specs/ho-resnet58-euler.yaml", "--budget", "lots"])
    assert result.exit_code == 1 and result.output.strip() == (
        "error: budget 'lots' is not a size such as 2GiB, 512MiB, 1.5GB or a number of bytes")


@pytest.mark.parametrize("value, message", [
    ("[[2,1]]", "stages[0].checkpoint[0]: a group is [first, last] with first <= last, found [2, 1]"),
    ("[[0,40]]", "stages[0].checkpoint[0]: block 40 does not exist: the stage has 28 blocks (0 to 27)"),
    ("[[0,2],[2,3]]", "stages[0].checkpoint[1]: group [2, 3] overlaps or precedes the group before it (which ends "
                      "at block 2); list groups in block order"),
    ("[[0,-1]]", "stages[0].checkpoint[0][1]: must be at least 0, found -1"),
])
def test_bad_checkpoint_fields(value, message):
    from rkcompile import load_spec

    with pytest.raises(RkcompileError) as info:
        load_spec("specs/ho-resnet58-euler.yaml", [f"stages.0.checkpoint={value}"])
    assert str(info.value).endswith(message)


def test_multistep_blocks_are_never_checkpointed():
    """Found in review: a checkpoint group on a multistep stage passed `check` and crashed `build` (a multistep
    block hands on two states); the spec now refuses it and the planner never chooses it."""
    from rkcompile import load_spec
    from rkcompile.errors import SpecError

    with pytest.raises(SpecError) as info:
        load_spec("specs/ho-resnet58-ab3.yaml", {"stages.0.checkpoint": [[0, 1]]})
    assert info.value.path == "stages[0].checkpoint"
    assert "checkpoint groups recompute Runge–Kutta blocks; this stage is a multistep method" in info.value.message
    spec = load_spec("specs/continuousnet-2-2-2.yaml", {"stages.1.integrator": "ab3", "stages.1.steps": 6})
    assert [s.family.name for s in spec.stages] == ["rk", "multistep", "rk"]
    tight = plan(spec, budget=10**12, batch=2)
    chosen = plan(spec, budget=tight.minimum, batch=2)
    stages = {group[0] for group in chosen.groups}
    assert stages == {0, 2}  # the RK stages are checkpointed, the multistep one never
    build(chosen.spec)  # the written plan builds
