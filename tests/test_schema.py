"""Editor support: the committed JSON Schema is current, every spec names it in a modeline and validates against it."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest
import yaml
from click.testing import CliRunner

from rkcompile.cli import cli
from rkcompile.spec import Spec

ROOT = Path(__file__).parent.parent
SCHEMA = ROOT / "rkcompile.schema.json"
SPECS = sorted((ROOT / "specs").glob("*.yaml"))
MODELINE = "# yaml-language-server: $schema="


def validator() -> jsonschema.Draft202012Validator:
    schema = json.loads(SCHEMA.read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


def test_committed_schema_is_current(tmp_path):
    assert json.loads(SCHEMA.read_text()) == Spec.model_json_schema(), "regenerate: rkcompile schema -o rkcompile.schema.json"
    result = CliRunner().invoke(cli, ["schema", "-o", str(tmp_path / "s.json")])
    assert result.exit_code == 0 and result.output == f"wrote {tmp_path / 's.json'}\n"
    assert (tmp_path / "s.json").read_bytes() == SCHEMA.read_bytes()


@pytest.mark.parametrize("spec", SPECS, ids=lambda p: p.stem)
def test_every_spec_names_the_schema_and_validates(spec):
    first = spec.read_text().splitlines()[0]
    assert first.startswith(MODELINE)
    assert (spec.parent / first[len(MODELINE):]).resolve() == SCHEMA
    errors = [e.message for e in validator().iter_errors(yaml.safe_load(spec.read_text()))]
    assert errors == []


@pytest.mark.parametrize("name, found", [
    ("misspelt-stage-key", "'integratr' was unexpected"),
    ("unknown-top-key", "'stagse' was unexpected"),
    ("missing-name", "'name' is a required property"),
    ("unknown-weights", "is not valid under any of the given schemas"),
    ("wrong-type", "is not valid under any of the given schemas"),
])
def test_the_schema_rejects_structural_mistakes(name, found):
    errors = [e.message for e in validator().iter_errors(yaml.safe_load((ROOT / "tests" / "invalid" / f"{name}.yaml").read_text()))]
    assert errors and any(found in m for m in errors), errors


def test_schema_to_an_unwritable_path_is_one_line(tmp_path):
    result = CliRunner().invoke(cli, ["schema", "-o", str(tmp_path / "missing" / "s.json")])
    assert result.exit_code == 1
    assert result.output == f"Error: cannot write {tmp_path / 'missing' / 's.json'}: No such file or directory\n"
