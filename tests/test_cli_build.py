"""`rkcompile build`: the per-unit table, --set, --code, -o, and located errors."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner

from rkcompile.cli import cli


def run(*args: str):
    return CliRunner().invoke(cli, list(args))


def test_build_prints_units_and_total():
    result = run("build", "specs/ho-resnet58-rk4.yaml", "--set", "stages.0.evaluations=8")
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0].startswith("ho-resnet58-rk4: ")
    assert any(line.split()[:4] == ["stage0.block1", "rk4", "4", "295,936"] for line in lines)
    assert lines[-1].split() == ["total", "8", "594,378"]


def test_build_shared_and_basis_rows():
    result = run("build", "specs/continuousnet-2-2-2.yaml")
    assert result.exit_code == 0
    # basis pieces serve every block of their stage: one `stage2` row owns them (the rule `analyze` uses too)
    rows = {line.split()[0]: line.split()[-1] for line in result.output.splitlines()[2:]}
    assert rows["stage2"] == f"{2 * 74_112:,}" and rows["stage2.block0"] == "0" and "stage2.piece1" not in rows
    assert rows["total"] == "273,210"


def test_build_writes_code(tmp_path: Path):
    out = tmp_path / "model.py"
    result = run("build", "specs/pendulum-odenet.yaml", "--code", str(out))
    assert result.exit_code == 0
    text = out.read_text()
    assert "def forward(self, x):" in text and "self.stage0.f.fc1(" in text
    compile(text, str(out), "exec")  # the written code is valid Python


def test_build_invalid_budget_is_one_located_line():
    result = run("build", "specs/ho-resnet58-rk4.yaml", "--set", "stages.0.evaluations=9")
    assert result.exit_code == 1
    assert result.output.strip().count("\n") == 0
    assert "error: --set stages.0.evaluations=9: stages[0].evaluations:" in result.output  # located at the --set
    assert "nearest valid budgets: 8, 12" in result.output and "Traceback" not in result.output


def test_build_bad_set_and_unwritable_code(tmp_path: Path):
    result = run("build", "specs/pendulum-odenet.yaml", "--set", "stages.0.integrator=rk5")
    assert result.exit_code == 1 and "unknown tableau 'rk5'" in result.output
    result = run("build", "specs/pendulum-odenet.yaml", "--code", str(tmp_path / "missing" / "m.py"))
    assert result.exit_code == 1 and "cannot write" in result.output


def test_build_missing_spec():
    result = run("build", "specs/nope.yaml")
    assert result.exit_code == 1 and "specs/nope.yaml: no such file" in result.output


def test_analyze_prints_units_and_ratios():
    result = run("analyze", "specs/ho-resnet58-rk4.yaml", "--set", "stages.0.evaluations=8",
                 "--set", "input.height=8", "--set", "input.width=8")
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0] == "ho-resnet58-rk4  (batch 1, float32, optimizer sgd-momentum)"
    assert lines[1].startswith("ratios (×euler) are to the same network as forward Euler at equal evaluations")
    assert "(stage0 8 Euler steps for 2 rk4 blocks; nothing checkpointed)" in lines[1]
    block = next(line for line in lines if line.startswith("stage0.block1"))
    assert block.split()[1:3] == ["4", "295,936"] and block.split()[-4:] == ["1.33", "1.00", "1.05", "1.00"]
    total = next(line for line in lines if line.startswith("total"))
    assert total.split()[:3] == ["total", "8", "594,378"] and total.split()[-4:] == ["1.33", "1.00", "1.03", "1.00"]


def test_analyze_bad_input():
    result = run("analyze", "specs/spirals-rk4.yaml", "--measure")
    assert result.exit_code == 1 and "needs batch >= 2" in result.output
    result = run("analyze", "specs/pendulum-odenet.yaml", "--batch", "0")
    assert result.exit_code == 2


STEPS = """
name: steps
input: {channels: 3, height: 8, width: 8}
stem: {kind: conv, channels: 8, kernel: 3}
stages:
  - module: basic
    integrator: rk4
    evaluations: 8
    step: {h: 1, learn: channel, controller: lstm, skip_init: true}
  - channels: 16
    entry: stitch
    module: basic
    integrator: midpoint
    evaluations: 4
    weights: shared
    step: {T: 1, epsilon: 0.5, skip_init: true}
  - module: basic
    integrator: lm-resnet
    evaluations: 3
  - module: basic
    integrator: heun
    evaluations: 4
    step: {learn: scalar}
output: {classes: 10}
"""


def test_check_table_shows_inherited_widths_learned_steps_skip_init_and_epsilon(tmp_path):
    spec = tmp_path / "steps.yaml"
    spec.write_text(STEPS)
    result = run("check", str(spec))
    assert result.exit_code == 0, result.output
    header, *rows = [line.split("  ") for line in result.stdout.splitlines()[1:]]  # warnings go to stderr
    columns = [c.strip() for c in header if c.strip()]
    assert columns[-3:] == ["learned h", "skip_init", "epsilon"]
    cells = [[c.strip() for c in row if c.strip()] for row in rows]
    assert [row[1] for row in cells] == ["8 (inherited)", "16", "16 (inherited)", "16 (inherited)"]
    assert [row[-3:] for row in cells] == [
        ["per block and channel, lstm controller (reduction 4)", "per F, from 0", "1"],
        ["no", "per F, from 0", "1/2"],
        ["no", "no", "1"],
        ["per block", "no", "1"]]
    plain = run("check", "specs/ho-resnet58-rk4.yaml")  # nothing learned, scaled or skipped: no such columns
    assert "learned h" not in plain.output and "skip_init" not in plain.output and "epsilon" not in plain.output


def test_build_table_in_network_order_with_the_parameters_that_are_not_f(tmp_path):
    from rkcompile.summary import network_order

    spec = tmp_path / "steps.yaml"
    spec.write_text(STEPS)
    result = run("build", str(spec))
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()  # the shared-BatchNorm warning goes to stderr
    assert lines[1].split("  ")[-1].strip() == "of which not F"
    rows = {line.split()[0]: line for line in lines[2:]}
    labels = [line.split()[0] for line in lines[2:-1]]
    assert labels == ["stem", "stage0.block0", "stage0.block1", "stage0", "stage1.entry", "stage1.block0",
                      "stage1.block1", "stage1", "stage2.block0", "stage2.block1", "stage2.block2",
                      "stage3.block0", "stage3.block1", "head"]
    assert rows["stage0.block0"].endswith("skip_init 4") and rows["stage0"].endswith("controller 1,226")
    assert rows["stage1"].endswith("skip_init 1") and rows["stage2.block1"].endswith("k 1")
    assert rows["stage2.block0"].split()[-1] == "4,672"  # the first LM-ResNet step (Euler start-up) learns no k_n
    assert rows["stage3.block0"].endswith("h 1")
    # the order is the network's whatever order the graph first uses the units in
    shuffled = ["head", "stage1", "stage0.block1", "stage1.entry", "stem", "stage0", "stage1.block0", "stage0.block0"]
    assert sorted(shuffled, key=network_order) == ["stem", "stage0.block0", "stage0.block1", "stage0", "stage1.entry",
                                                   "stage1.block0", "stage1", "head"]
