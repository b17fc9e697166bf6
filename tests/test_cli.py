"""The command line through click's CliRunner: exit codes, one-line errors, tables and the schema."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from rkcompile import list_tableaux
from rkcompile.cli import cli

ROOT = Path(__file__).parent.parent
SPECS = sorted((ROOT / "specs").glob("*.yaml"))
INVALID = ROOT / "tests" / "invalid"


@pytest.fixture
def run():
    """Invoke the CLI in the repository root and return the click Result."""
    runner = CliRunner()

    def invoke(*args: str):
        return runner.invoke(cli, [str(a) for a in args], catch_exceptions=False)

    return invoke


def test_tableaux_lists_every_builtin(run):
    result = run("tableaux")
    assert result.exit_code == 0
    header, *lines = result.stdout.splitlines()
    columns = header.split()
    assert columns[0] == "name" and {"stages", "order"} <= set(columns)
    rows = {ln.split()[0]: dict(zip(columns, ln.split(), strict=False)) for ln in lines if ln and ln[0].isalnum()}
    assert set(rows) == set(list_tableaux()) and len(rows) == 16
    for name, stages, order in (("euler", "1", "1"), ("rk4", "4", "4"), ("verner89", "16", "8")):
        assert (rows[name]["stages"], rows[name]["order"]) == (stages, order), rows[name]
    if "evaluated" in columns:  # evaluations per step once stages 15-16 are pruned
        assert rows["verner89"]["evaluated"] == "14"


def test_tableaux_rk4_shows_exact_fractions(run):
    result = run("tableaux", "rk4")
    assert result.exit_code == 0
    assert "order 4" in result.stdout
    assert "1/6" in result.stdout and "1/3" in result.stdout


def test_tableaux_verner89_shows_exact_forms(run):
    out = run("tableaux", "verner89").stdout
    assert "(2+2*sqrt(6))/15" in out
    assert "103/1680" in out and "-27/140" in out and "1024/1365" in out
    assert "stages 15, 16 do not reach the output" in out


def test_unknown_tableau_is_one_line_with_suggestion(run):
    result = run("tableaux", "rk5")
    assert result.exit_code == 1
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "did you mean" in lines[0], result.stderr
    assert "Traceback" not in result.output


def test_check_all_specs(run):
    result = run("check", *SPECS)
    assert result.exit_code == 0, result.output
    for path in SPECS:
        assert f"{path}: ok ({path.stem})" in result.stdout
    assert len(re.findall(r"^  stage  width +entry", result.stdout, flags=re.M)) == len(SPECS)
    assert "rk4 (order 4)" in result.stdout and "basis(2)" in result.stdout


def test_check_reports_invalid_and_still_valid(run):
    good, bad = ROOT / "specs" / "pendulum-odenet.yaml", INVALID / "misspelt-stage-key.yaml"
    result = run("check", bad, good)
    assert result.exit_code == 1
    assert f"{good}: ok (pendulum-odenet)" in result.stdout
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert errors == [f"error: {bad}:7:5: stages[0].integratr: unknown field 'integratr' (did you mean 'integrator'?)"]
    assert "1 of 2 specs invalid" in result.stderr
    assert "Traceback" not in result.output


def test_check_without_arguments_is_a_usage_error(run):
    result = run("check")
    assert result.exit_code == 2
    assert "Usage:" in result.output


def test_check_with_override(run):
    result = run("check", "--set", "stages.0.integrator=rk4", ROOT / "specs" / "ho-resnet58-euler.yaml")
    assert result.exit_code == 0, result.output
    row = result.stdout.splitlines()[-1].split()
    assert row[4:7] == ["rk4", "(order", "4)"]
    assert row[-3:] == ["7", "28", "1"]  # 7 blocks of 4 evaluations, h = 1


def test_check_with_bad_override(run):
    result = run("check", "--set", "stages.3.integrator=rk4", ROOT / "specs" / "ho-resnet58-euler.yaml")
    assert result.exit_code == 1
    assert "error: --set: stages[3]: index 3 out of range" in result.stderr


def test_schema_is_json_with_stages(run):
    result = run("schema")
    assert result.exit_code == 0
    schema = json.loads(result.stdout)
    assert "stages" in schema["properties"]
    assert set(schema["required"]) >= {"name", "input", "stages"}


def test_debug_shows_traceback_default_does_not(run):
    plain = run("tableaux", "rk5")
    assert "Traceback" not in plain.output
    debug = run("--debug", "tableaux", "rk5")
    assert debug.exit_code == 1
    assert "Traceback" in debug.stderr and "TableauError" in debug.stderr
    assert "did you mean" in debug.stderr.splitlines()[-1]


def test_python_dash_m_help():
    result = subprocess.run([sys.executable, "-m", "rkcompile", "--help"], capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    assert "Usage:" in result.stdout
    for command in ("check", "schema", "tableaux"):
        assert command in result.stdout


def test_console_script_version():
    script = Path(sys.executable).parent / "rkcompile"
    if not script.exists():
        pytest.skip("console script not installed in this environment")
    result = subprocess.run([str(script), "--version"], capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "rkcompile, version 0.1.0"


def test_schema_accepts_kind_shorthands(run):
    schema = json.loads(run("schema").stdout)
    weights = schema["$defs"]["Stage"]["properties"]["weights"]
    branches = weights.get("anyOf", []) + weights.get("oneOf", [])
    assert any(b.get("type") == "string" or "enum" in b for b in branches), weights


def test_debug_check_shows_traceback(run):
    result = run("--debug", "check", INVALID / "missing-name.yaml")
    assert result.exit_code == 1
    assert "Traceback" in result.stderr


def test_every_spec_validates_against_the_json_schema(run):
    jsonschema = pytest.importorskip("jsonschema")
    schema = json.loads(run("schema").stdout)
    for path in sorted(Path("specs").glob("*.yaml")):
        jsonschema.validate(yaml.safe_load(path.read_text()), schema)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"name": "x", "input": {"features": 2}, "stages": [{"module": {"kind": "mlp"},
                                                                               "weights": "sharde"}]}, schema)
