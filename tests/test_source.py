"""rkcompile/source.py: node positions, path formatting, YAML features and the located errors of the reader."""

from __future__ import annotations

import re

import pytest

from rkcompile import SpecError, parse_spec
from rkcompile.source import MAX_DEPTH, MAX_NODES, format_path, parse_yaml, read_source

NESTED = """\
name: n
stages:
  - module:
      kind: mlp
      hidden: [4, 8]
  - steps: 2
"""


def error_of(text: str) -> SpecError:
    """Parse `text` and return the SpecError it raises."""
    with pytest.raises(SpecError) as info:
        parse_yaml(text, "f.yaml")
    assert "\n" not in str(info.value), str(info.value)
    return info.value


# ---------------------------------------------------------------- positions and paths
def test_positions_of_nested_keys_and_list_items():
    source = parse_yaml(NESTED, "f.yaml")
    assert source.positions[()] == (1, 1)
    assert source.positions[("name",)] == (1, 1)
    assert source.positions[("stages",)] == (2, 1)
    assert source.positions[("stages", 0)] == (3, 5)
    assert source.positions[("stages", 0, "module")] == (3, 5)
    assert source.positions[("stages", 0, "module", "kind")] == (4, 7)
    assert source.positions[("stages", 0, "module", "hidden", 1)] == (5, 19)
    assert source.positions[("stages", 1, "steps")] == (6, 5)


def test_locate_falls_back_to_deepest_existing_node():
    source = parse_yaml(NESTED, "f.yaml")
    assert source.locate(("stages", 1, "module", "kind")) == (6, 5)  # stages[1] exists, its module does not
    assert source.locate(("nope",)) == (1, 1)


def test_source_error_is_located():
    source = parse_yaml(NESTED, "f.yaml")
    error = source.error(("stages", 0, "module", "kind"), "bad kind")
    assert str(error) == "f.yaml:4:7: stages[0].module.kind: bad kind"
    assert (error.file, error.line, error.column, error.path) == ("f.yaml", 4, 7, "stages[0].module.kind")


@pytest.mark.parametrize(("path", "text"), [
    ((), ""),
    (("name",), "name"),
    (("stages", 1, "module", "kind"), "stages[1].module.kind"),
    (("stages", 0, "integrator", "A", 2, 1), "stages[0].integrator.A[2][1]"),
    ((0, "a"), "[0].a"),
])
def test_format_path(path, text):
    assert format_path(path) == text


def test_read_source_tells_text_from_path(tmp_path):
    assert parse_yaml("a: 1").data == {"a": 1}
    assert parse_yaml("a: 1").file == "<spec>"
    file = tmp_path / "s.yaml"
    file.write_text("a: 2\n")
    assert read_source(str(file)).data == {"a": 2}
    assert read_source(file).file == str(file)
    assert parse_yaml("a: 3", file="named.yaml").file == "named.yaml"


# ---------------------------------------------------------------- YAML features
def test_merge_keys_work():
    source = parse_yaml("base: &b {x: 1, y: 2}\nd:\n  <<: *b\n  z: 3\n")
    assert source.data["d"] == {"x": 1, "y": 2, "z": 3}


def test_merge_keys_can_be_overridden():
    source = parse_yaml("base: &b {x: 1, y: 2}\nd:\n  <<: *b\n  y: 3\n")
    assert source.data["d"] == {"x": 1, "y": 3}


def test_aliases_within_bound_expand():
    source = parse_yaml("a: &a [1, 2]\nb: *a\n")
    assert source.data == {"a": [1, 2], "b": [1, 2]}
    assert source.data["b"] is not source.data["a"]  # each alias is its own copy
    assert source.positions[("b",)] == (2, 1)
    assert source.positions[("b", 0)] == (1, 8)  # an aliased node is located at its anchor


def test_alias_expansion_beyond_bound_is_an_error():
    text = "a: &a [" + ", ".join(["x"] * 100) + "]\nb: &b [" + ", ".join(["*a"] * 100) + "]\n"
    text += "c: [" + ", ".join(["*b"] * 20) + "]\n"
    error = error_of(text)
    assert f"more than {MAX_NODES} nodes" in str(error)
    assert error.line is not None


def test_nesting_beyond_depth_is_an_error():
    depth = MAX_DEPTH + 5
    error = error_of("a: " + "[" * depth + "]" * depth + "\n")
    assert f"nesting deeper than {MAX_DEPTH} levels" in str(error)
    assert re.match(r"f\.yaml:1:\d+: a\[0\]", str(error))


def test_very_deep_nesting_is_a_located_error():
    error_of("a: " + "[" * 3000 + "]" * 3000 + "\n")


# ---------------------------------------------------------------- keys
def test_integer_key_becomes_a_string():
    assert parse_yaml("1: x\n").data == {"1": "x"}
    with pytest.raises(SpecError, match=r"<spec>:4:5: stages\[0\]\.1: unknown field '1'"):
        parse_spec("name: n\ninput: {features: 2}\nstages:\n  - 1: x\n    module: {kind: mlp, hidden: [2]}\n"
                  "    steps: 1\n")


@pytest.mark.parametrize(("text", "found"), [
    ("true: x\n", "bool"),
    ("1.5: x\n", "float"),
    ("null: x\n", "NoneType"),
])
def test_non_string_scalar_key_is_located(text, found):
    assert str(error_of(text)) == f"f.yaml:1:1: mapping keys must be plain strings, found {found}"


@pytest.mark.parametrize(("text", "column"), [("[a]: x\n", 1), ("{a: 1}: x\n", 1), ("? [a]\n: x\n", 3)])
def test_complex_key_is_located(text, column):
    error = error_of(text)
    assert str(error).startswith(f"f.yaml:1:{column}: mapping keys must be plain strings")


def test_complex_key_names_what_it_found():
    assert "found NoneType" not in str(error_of("[a]: x\n"))


def test_duplicate_key_is_located():
    error = error_of("a: 1\nb:\n  c: 1\n  c: 2\n")
    assert str(error) == "f.yaml:4:3: b.c: duplicate key 'c' (first given on line 3)"


# ---------------------------------------------------------------- values
@pytest.mark.parametrize(("text", "kind"), [
    ("a: 2001-12-14\n", "date"),
    ("a: 2001-12-14t21:59:43.10-05:00\n", "datetime"),
    ("a: !!binary aGVsbG8=\n", "bytes"),
])
def test_unsupported_value_types_are_located(text, kind):
    assert str(error_of(text)) == f"f.yaml:1:1: a: unsupported YAML value of type {kind}"


@pytest.mark.parametrize("text", ["a: .nan\n", "a: .inf\n", "a: [1, -.inf]\n", "a: 1.0e+999\n"])
def test_non_finite_numbers_are_rejected(text):
    assert "non-finite number" in str(error_of(text))


@pytest.mark.parametrize("text", ["a: !foo x\n", "a: !!python/object:os.system x\n"])
def test_unknown_tag_is_located(text):
    error = error_of(text)
    assert str(error).startswith("f.yaml:1:4: a: invalid YAML: could not determine a constructor for the tag")


@pytest.mark.parametrize("text", ["a: !foo x\n", "a: \x00\n"])
def test_yaml_error_has_no_pyyaml_snippet(text):
    error = error_of(text)
    assert "<unicode string>" not in str(error) and error.line == 1, str(error)


@pytest.mark.parametrize("text", ["a: !!python/object/apply:os.system ['true']\n", "a: !!python/name:os.system\n"])
def test_python_tags_never_construct_objects(text):
    try:
        data = parse_yaml(text).data
    except SpecError:
        return
    assert data == {"a": ["true"]}  # a tag on a collection is ignored: plain data, never an object


# ---------------------------------------------------------------- invalid YAML
@pytest.mark.parametrize(("text", "line"), [
    ("a:\n\tb: 1\n", 2),                 # a tab where indentation is expected
    ("a: 1\n  b: 2\n", 2),               # bad indentation
    ("a: b\nc\n", 3),                    # a plain line that is not a key
    ("a: [1, 2\nb: 3\n", 2),             # unclosed flow sequence
    ("a: 'unterminated\n", 2),
    ("a: 1\n---\nb: 2\n", 2),            # two documents
])
def test_invalid_yaml_has_a_line(text, line):
    error = error_of(text)
    assert str(error).startswith(f"f.yaml:{line}:"), str(error)
    assert "invalid YAML" in str(error)


def test_control_character_is_one_line():
    assert "unacceptable character #x0000" in str(error_of("a: \x00\n"))


@pytest.mark.parametrize("text", ["", "# only a comment\n"])
def test_empty_document(text):
    assert str(error_of(text)) == "f.yaml:1:1: empty spec: expected a mapping with 'name' and 'stages'"


def test_explicit_empty_document_is_null():
    assert parse_yaml("---\n").data is None
    expected = r"^<spec>:\d+:1: a spec is a mapping with 'name' and 'stages', found NoneType$"
    with pytest.raises(SpecError, match=expected):
        parse_spec("---\n")


def test_oversized_text_is_rejected():
    with pytest.raises(SpecError, match="larger than 1000000 bytes"):
        parse_yaml("a: 1\n" + "#" * 1_000_001)


def test_text_with_nul_byte_is_an_error():
    with pytest.raises(SpecError):
        read_source("a\x00b")


def test_text_with_lone_surrogate_is_an_error():
    with pytest.raises(SpecError):
        parse_yaml("a: \ud800\n")
