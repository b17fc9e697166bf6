"""The shipped specs by name: resolution (a path always wins), the nearest-name error, and `rkcompile specs`."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

import rkcompile
from rkcompile import SpecError, build, load_spec
from rkcompile.catalog import list_specs, resolve, spec_names, specs_dir
from rkcompile.cli import cli

ROOT = Path(__file__).parent.parent


def test_the_catalog_is_the_top_level_specs_directory():
    assert specs_dir() == ROOT / "specs"
    assert spec_names() == sorted(p.stem for p in (ROOT / "specs").glob("*.yaml"))


@pytest.mark.parametrize("name", ["pendulum-odenet", "continuousnet-2-2-2"])
def test_build_by_name_equals_build_by_path(name, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # outside the repository: the name is found in the catalog, not the working directory
    by_name, by_path = build(name), build(ROOT / "specs" / f"{name}.yaml")
    assert by_name.spec.name == name
    assert by_name.code == by_path.code
    reference = by_path.state_dict()
    assert all(torch.equal(v, reference[k]) for k, v in by_name.state_dict().items())


def test_a_path_wins_over_a_name(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    text = (ROOT / "specs" / "pendulum-odenet.yaml").read_text().replace("name: pendulum-odenet", "name: mine")
    (tmp_path / "spirals-rk4").write_text(text)
    assert load_spec("spirals-rk4").name == "mine"
    assert resolve("spirals-rk4") == "spirals-rk4"


@pytest.mark.parametrize("given, message", [
    ("ho-resnet58-rk4k", "ho-resnet58-rk4k: no such file, and no shipped spec of that name "
                         "(did you mean 'ho-resnet58-rk4'?) (`rkcompile specs` lists them)"),
    ("zzz", "zzz: no such file, and no shipped spec of that name (`rkcompile specs` lists them)"),
    ("nope/spirals-rk4.yaml", "nope/spirals-rk4.yaml: no such file"),  # path-like: never looked up by name
])
def test_unknown_names_suggest_the_nearest(given, message, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SpecError) as info:
        load_spec(given)
    assert str(info.value) == message
    result = CliRunner().invoke(cli, ["build", given])
    assert result.exit_code == 1 and result.output == f"error: {message}\n"


def test_specs_lists_every_shipped_spec_with_source_and_parameters():
    result = CliRunner().invoke(cli, ["specs"])
    assert result.exit_code == 0, result.output
    header, *lines = result.output.splitlines()
    assert header.split() == ["name", "source", "parameters"]
    rows = {line.split()[0]: line for line in lines}
    assert sorted(rows) == spec_names()
    assert "Luo et al. 2022" in rows["ho-resnet58-rk4"] and "Feldhausen and Vallbo" in rows["spirals-rk4"]
    assert "Queiruga et al. 2020" in rows["continuousnet-8-8-8"] and "Chang et al. 2018" in rows["resnet14-cifar10"]
    for name in ("pendulum-odenet", "spirals-rk4", "continuousnet-2-2-2", "ho-resnet58-verner89-adaptive"):
        counted = sum(p.numel() for p in build(name).parameters())  # real tensors on the CPU, not the meta device
        assert rows[name].split()[-1] == f"{counted:,}"


def test_a_spec_without_a_citation_lists_no_source(tmp_path, monkeypatch):
    shutil.copy(ROOT / "specs" / "pendulum-odenet.yaml", tmp_path / "a.yaml")
    (tmp_path / "b.yaml").write_text("".join(line for line in (ROOT / "specs" / "pendulum-odenet.yaml").open()
                                             if not line.startswith("#")))
    monkeypatch.setattr("rkcompile.catalog.specs_dir", lambda: tmp_path)
    assert [(e.name, e.source, e.parameters) for e in list_specs()] == [
        ("a", "Queiruga et al. 2020", 252), ("b", "-", 252)]


def test_version_comes_from_one_place():
    result = CliRunner().invoke(cli, ["--version"])
    assert result.exit_code == 0 and result.output == f"rkcompile, version {rkcompile.__version__}\n"
    pyproject = (ROOT / "pyproject.toml").read_text()
    assert 'dynamic = ["version"]' in pyproject and 'version = { attr = "rkcompile.__version__" }' in pyproject
