"""What a new user meets first: where errors point, exit codes, help, suggestions, plain wording, stage names."""

from __future__ import annotations

import re
import warnings
from pathlib import Path

import pytest
from click.testing import CliRunner

import rkcompile
from rkcompile.cli import cli
from rkcompile.errors import RkcompileWarning, SpecError

SPIRALS = "specs/spirals-rk4.yaml"


def run(*args: str):
    return CliRunner().invoke(cli, [str(a) for a in args])


# ---------------------------------------------------------------- --set errors are located at the --set
@pytest.mark.parametrize("command", ["check", "build", "analyze", "draw"])
def test_a_bad_set_is_located_at_the_set_argument(command: str, tmp_path: Path):
    extra = ["-o", tmp_path / "x.dot"] if command == "draw" else []
    result = run(command, SPIRALS, "--set", "stages.0.integrator=rk5", *extra)
    assert result.exit_code == 1
    first = result.output.splitlines()[0]
    assert first.startswith("error: --set stages.0.integrator=rk5: stages[0].integrator: unknown tableau 'rk5' "
                            "(did you mean 'dopri5'?); valid names: euler, heun,"), first
    assert "spirals-rk4.yaml:" not in result.output and "Traceback" not in result.output


def test_an_error_inside_a_set_value_keeps_its_field_path():
    result = run("check", SPIRALS, "--set", "stages.0.weights={kind: basis}")
    assert result.exit_code == 1
    assert result.output.splitlines()[0] == (
        "error: --set stages.0.weights={kind: basis}: stages[0].weights: a constant basis needs 'pieces'")


def test_an_error_the_set_did_not_touch_stays_in_the_file():
    result = run("check", SPIRALS, "--set", "stages.0.step.h=2", "--set", "name=''")
    assert result.exit_code == 1
    assert result.output.splitlines()[0] == "error: --set name='': name: must not be empty"
    result = run("check", SPIRALS, "--set", "stages.0.steps=3")  # both steps and evaluations: the stage's fault
    assert result.output.startswith(f"error: {SPIRALS}:10:5: stages[0]: give exactly one of 'evaluations'")


def test_python_overrides_are_located_at_the_override():
    with pytest.raises(SpecError) as info:
        rkcompile.load_spec(SPIRALS, {"stages.0.evaluations": 26})
    assert str(info.value) == (
        "overrides['stages.0.evaluations']=26: stages[0].evaluations: a budget of 26 evaluations does not divide into "
        "blocks of 4 (rk4 evaluates F 4 times per step); nearest valid budgets: 24, 28")
    with pytest.raises(SpecError, match=r"^overrides\['stages\.0\.integrator'\]='rk5': stages\[0\]\.integrator: "):
        rkcompile.build(SPIRALS, stages__0__integrator="rk5")


# ---------------------------------------------------------------- exit codes, --debug, help
COMMANDS = [["check"], ["build"], ["analyze"], ["draw", "-o", "x.svg"], ["plan", "--budget", "1GiB"],
            ["export", "-o", "x.onnx"], ["remanifest", "--steps", "2", "-o", "x.pt"], ["refine", "-o", "x.pt"]]


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: c[0])
def test_a_missing_file_exits_1_from_every_command(command: list[str], tmp_path: Path):
    missing = tmp_path / "nope.yaml"
    result = run(command[0], missing, *command[1:])
    assert result.exit_code == 1, result.output
    assert f"{missing}" in result.output and "no such file" in result.output
    assert "Usage:" not in result.output and "Traceback" not in result.output


@pytest.mark.parametrize("where", ["before", "after"])
def test_debug_before_or_after_the_command(where: str, tmp_path: Path):
    missing = tmp_path / "nope.yaml"
    args = ["--debug", "analyze", missing] if where == "before" else ["analyze", "--debug", missing]
    result = run(*args)
    assert result.exit_code == 1
    assert "Traceback" in result.output and result.output.splitlines()[-1] == f"error: {missing}: no such file"


def test_top_level_help_shows_every_command_description_whole():
    result = run("--help")
    assert result.exit_code == 0
    commands = result.output.split("Commands:")[1]
    assert "..." not in commands
    text = " ".join(commands.split())
    for name, command in cli.commands.items():
        sentence = command.get_short_help_str(limit=10_000)
        assert f"{name} {sentence}" in text, name


@pytest.mark.parametrize("command", ["draw", "analyze"])
def test_a_file_that_is_neither_spec_nor_model(command: str, tmp_path: Path):
    source = tmp_path / "model.py"
    source.write_text("import torch\n")
    extra = ["-o", tmp_path / "x.svg"] if command == "draw" else []
    result = run(command, source, *extra)
    assert (result.exit_code, result.output) == (
        1, f"error: {source}: expected a .yaml spec or a .pt model, found a .py file\n")


# ---------------------------------------------------------------- suggestions and plain words
@pytest.mark.parametrize(("setting", "suggested"), [
    ("stages.0.integrator=runge-kutta-4", "rk4"),
    ("stages.0.integrator=Dormand-Prince", "dopri5"),
    ("stages.0.module.layers.2=swish", "silu"),
    ("stages.0.module.layers.1=BN", "batchnorm"),
    ("stages.0.module.layers.2=Leaky_ReLU", "leaky-relu"),
])
def test_suggestions_know_other_names(setting: str, suggested: str):
    result = run("check", SPIRALS, "--set", setting)
    assert result.exit_code == 1
    assert f"(did you mean '{suggested}'?)" in result.output.splitlines()[0]


@pytest.mark.parametrize(("setting", "message"), [
    ("stages=[]", "stages: needs at least 1 item, found 0 items"),
    ("stages.0.module={kind: mlp, hidden: []}", "stages[0].module.hidden: needs at least 1 item, found 0 items"),
    ("name=''", "name: must not be empty"),
])
def test_length_errors_in_plain_words(setting: str, message: str):
    result = run("check", SPIRALS, "--set", setting)
    assert result.exit_code == 1
    first = result.output.splitlines()[0]
    assert first == f"error: --set {setting}: {message}"
    assert "after validation" not in first and "should have" not in first


# ---------------------------------------------------------------- stage names in tables and drawings
NAMED = ["--set", "stages.0.name=body", "--set", "stages.0.evaluations=8"]


def test_build_and_analyze_tables_use_the_stage_name():
    built = run("build", SPIRALS, *NAMED)
    assert built.exit_code == 0, built.output
    units = [line.split()[0] for line in built.output.splitlines()[2:]]
    assert units == ["stem", "body.block0", "body.block1", "head", "total"]
    analyzed = run("analyze", SPIRALS, *NAMED)
    assert analyzed.exit_code == 0, analyzed.output
    lines = analyzed.stdout.splitlines()
    assert lines[2].startswith("unit ")  # title, baseline sentence, header
    units = [line.split()[0] for line in lines[3:] if line and not line.startswith(("note", "legend", " "))]
    assert units[:5] == ["stem", "body.block0", "body.block1", "body", "head"] and "stage0" not in analyzed.output


@pytest.mark.parametrize("level", ["network", "block", "stage"])
def test_drawings_use_the_stage_name(level: str, tmp_path: Path):
    out = tmp_path / "x.dot"
    result = run("draw", SPIRALS, *NAMED, "-o", out, "--level", level)
    assert result.exit_code == 0, result.output
    assert "body (stage0)" in out.read_text()


def test_check_shows_h_as_written():
    result = run("check", SPIRALS, "--set", "stages.0.step.h=0.1")
    assert result.exit_code == 0 and result.output.splitlines()[2].split()[-1] == "0.1"
    result = run("check", SPIRALS, "--set", "stages.0.step={T: 1}")
    assert result.exit_code == 0 and result.output.splitlines()[2].split()[-1] == "1/5"


# ---------------------------------------------------------------- --memory-plot says what it drew
def test_memory_plot_names_plotted_and_skipped_schemes_and_includes_the_specs_own(tmp_path: Path):
    pytest.importorskip("matplotlib")
    plot = tmp_path / "m.png"
    result = run("draw", SPIRALS, "--set", "stages.0.integrator=kutta3", "--set", "stages.0.evaluations=9",
                 "--memory-plot", plot)
    assert result.exit_code == 0, result.output
    line = result.output.splitlines()[-1]
    assert line.startswith(f"wrote {plot} (memory per stage: plotted euler, kutta3 (the spec's own); skipped ")
    for scheme, stages in (("midpoint", 2), ("rk4", 4), ("verner89", 14)):
        assert re.search(rf"{scheme}: stages\[0\]\.evaluations: a budget of 9 evaluations does not divide into "
                         rf"blocks of {stages}\b", line), scheme
    assert plot.stat().st_size > 0


def test_memory_plot_summary_without_skips(tmp_path: Path):
    pytest.importorskip("matplotlib")
    from rkcompile.memory_plot import scheme_memory

    with warnings.catch_warnings():
        warnings.simplefilter("error", RkcompileWarning)
        data = scheme_memory(rkcompile.load_spec(SPIRALS), ["euler", "rk4"])
    assert data.summary() == "plotted euler, rk4 (the spec's own)"
    data = scheme_memory(rkcompile.load_spec(SPIRALS, ["stages.0.evaluations=28"]), ["euler"])
    assert data.summary() == "plotted euler, rk4 (the spec's own)"
