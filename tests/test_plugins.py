"""Plugins through the `rkcompile.plugins` entry-point group: lazy discovery, origins, failures, clashes, `kinds`.

The fast tests monkeypatch `importlib.metadata.entry_points`; the slow one installs the demo plugin package
(tests/data/demo-plugin) into a temporary venv and builds a spec that uses its kind and its tableau.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import warnings
from importlib import metadata
from pathlib import Path
from types import ModuleType, SimpleNamespace

import pytest
import torch
from click.testing import CliRunner

from rkcompile import parse_spec, plugins
from rkcompile.bases import BASES
from rkcompile.cli import cli
from rkcompile.compiler import build
from rkcompile.entries import ENTRIES
from rkcompile.errors import PluginError, PluginWarning
from rkcompile.functions import FUNCTIONS
from rkcompile.heads import HEADS
from rkcompile.integrators import FAMILIES
from rkcompile.layers import LAYERS
from rkcompile.multistep import _ORIGINS as MULTISTEP_ORIGINS
from rkcompile.multistep import MULTISTEP
from rkcompile.stems import STEMS
from rkcompile.tableaux import _ORIGINS, _REGISTRY, get_tableau, list_tableaux, tableau_origin
from rkcompile.weights import WEIGHTS

ROOT = Path(__file__).parent.parent
PLUGIN = ROOT / "tests" / "data" / "demo-plugin"
REGISTRIES = (FUNCTIONS, LAYERS, ENTRIES, STEMS, HEADS, WEIGHTS, BASES, FAMILIES)
SPEC = """\
name: plugged
seed: 0
input: {features: 6}
stages:
  - module: gated-linear
    integrator: ralston3
    evaluations: 6
output: {classes: 2}
"""


def entry_point(name: str, target: object, dist: str = "demo-dist", version: str = "1.0") -> SimpleNamespace:
    """A stand-in for an importlib.metadata.EntryPoint of group rkcompile.plugins whose load() returns `target`."""
    def load() -> object:
        if isinstance(target, Exception):
            raise target
        return target

    return SimpleNamespace(name=name, value=f"{name}_module:register", group=plugins.GROUP, load=load,
                           dist=SimpleNamespace(name=dist, version=version))


@pytest.fixture
def installed(monkeypatch):
    """Install fake entry points (call the fixture's result with them); afterwards forget what the plugins added."""
    calls = []

    def install(*points):
        def entry_points(**selection):
            calls.append(selection)
            return list(points) if selection.get("group") == plugins.GROUP else []

        monkeypatch.setattr(metadata, "entry_points", entry_points)
        plugins._State.done, plugins._State.clash = False, None
        return calls

    yield install
    for registry in REGISTRIES:
        for name in [n for n, o in registry._origins.items() if o.startswith("plugin ")]:
            registry.unregister(name)
    for name in [n for n, o in _ORIGINS.items() if o.startswith("plugin ")]:
        _REGISTRY.pop(name), _ORIGINS.pop(name)
    for name in [n for n, o in MULTISTEP_ORIGINS.items() if o.startswith("plugin ")]:
        MULTISTEP.pop(name), MULTISTEP_ORIGINS.pop(name)
    plugins._State.done, plugins._State.clash = True, None


def _demo():
    """The demo plugin's register function (imported from its source directory)."""
    sys.path.insert(0, str(PLUGIN))
    try:
        import rkcompile_demo_plugin
    finally:
        sys.path.remove(str(PLUGIN))
    return rkcompile_demo_plugin.register


def test_import_rkcompile_reads_no_plugins():
    code = "import sys, rkcompile; print('rkcompile.plugins' in sys.modules, 'importlib.metadata' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out[0] == "False"


def test_discovery_is_lazy_and_happens_once(installed):
    calls = installed(entry_point("demo", _demo()))
    assert calls == [] and "gated-linear" not in FUNCTIONS._entries  # nothing read before a lookup
    assert "gated-linear" in FUNCTIONS  # the first lookup loads the plugins
    list_tableaux(), FUNCTIONS.names(), HEADS.get("classifier")
    assert calls == [{"group": "rkcompile.plugins"}]


def test_a_plugin_kind_and_tableau_build_like_built_in_ones(installed):
    installed(entry_point("demo", _demo(), dist="rkcompile-demo-plugin", version="0.1.0"))
    spec = parse_spec(SPEC)
    assert spec.stages[0].tableau.order == 3 and spec.stages[0].blocks == 2
    model = build(spec)
    width = 6  # 6 evaluations of linear(6 -> 6) + gate(6), the head linear(6 -> 2)
    assert sum(p.numel() for p in model.parameters()) == 6 * (width * width + width + width) + width * 2 + 2
    assert model(torch.randn(3, width)).shape == (3, 2)
    origin = "plugin rkcompile-demo-plugin 0.1.0 (entry point 'demo')"
    assert FUNCTIONS.origin("gated-linear") == origin and tableau_origin("ralston3") == origin
    assert FUNCTIONS.origin("basic") == "built in" and tableau_origin("rk4") == "built in"


def test_kinds_lists_every_registry_with_origins(installed):
    installed(entry_point("demo", _demo(), dist="rkcompile-demo-plugin", version="0.1.0"))
    result = CliRunner().invoke(cli, ["kinds", "--json"])
    assert result.exit_code == 0, result.output
    found = json.loads(result.output)
    assert list(found) == ["residual functions", "layers", "entries", "stems", "heads", "weight modes", "bases",
                           "integrator families", "tableaux", "multistep methods"]
    assert {"name": "gated-linear", "from": "plugin rkcompile-demo-plugin 0.1.0 (entry point 'demo')"} in \
        found["residual functions"]
    assert {e["name"] for e in found["tableaux"]} == set(list_tableaux()) >= {"ralston3", "rk4"}
    assert [e["name"] for e in found["heads"]] == HEADS.names()
    text = CliRunner().invoke(cli, ["kinds"]).output
    assert text.splitlines()[0].split() == ["registry", "name", "from"]
    assert any(line.split()[:3] == ["tableaux", "ralston3", "plugin"] for line in text.splitlines())


def test_a_kind_registered_from_a_module_names_that_module(installed):
    installed()
    from rkcompile.registry import Registry

    r = Registry("colour")
    r.register("red", 1)
    assert r.origin("red") == __name__  # tests.test_plugins (or test_plugins, as pytest imports it)


def test_a_failing_plugin_is_one_warning_and_leaves_nothing_registered(installed):
    def half_done() -> None:
        from rkcompile.heads import HEADS, Classifier

        HEADS.register("half", Classifier)
        raise RuntimeError("cannot find my\nconfiguration")

    installed(entry_point("broken", half_done, dist="broken-dist", version="2.0"),
              entry_point("demo", _demo()))
    with pytest.warns(PluginWarning) as caught:
        names = FUNCTIONS.names()
    assert [str(w.message) for w in caught] == [
        "rkcompile plugin 'broken' from broken-dist 2.0 failed and was skipped: RuntimeError: cannot find my "
        "configuration"]
    assert "half" not in HEADS and "gated-linear" in names  # undone; the other plugin still loads


def test_an_unimportable_or_uncallable_entry_point_is_a_warning(installed):
    installed(entry_point("gone", ModuleNotFoundError("No module named 'gone_module'")), entry_point("five", 5))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        FUNCTIONS.get("basic")
    assert [str(w.message) for w in caught] == [
        "rkcompile plugin 'gone' from demo-dist 1.0 failed and was skipped: ModuleNotFoundError: No module named "
        "'gone_module'",
        "rkcompile plugin 'five' from demo-dist 1.0 failed and was skipped: TypeError: five_module:register is "
        "neither a callable nor a module"]
    assert all(w.category is PluginWarning for w in caught)


def test_a_module_entry_point_registers_on_import(installed):
    module = ModuleType("colour_plugin")  # stands for a module whose import registered a basis family
    installed(entry_point("colours", module))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert "constant" in BASES


def test_a_plugin_kind_clashing_with_a_built_in_is_an_error_naming_both(installed):
    def clash() -> None:
        from rkcompile.functions import FUNCTIONS
        from rkcompile.functions.mlp import Mlp

        FUNCTIONS.register("basic", Mlp)

    installed(entry_point("shadow", clash, dist="shadow-dist", version="0.3"))
    message = ("plugin shadow-dist 0.3 (entry point 'shadow'): residual function 'basic' is already registered "
               "(built in); one of them must rename it")
    with pytest.raises(PluginError) as info:
        FUNCTIONS.get("basic")
    assert str(info.value) == message
    with pytest.raises(PluginError, match="one of them must rename it"):  # every later lookup too
        get_tableau("rk4")
    result = CliRunner().invoke(cli, ["kinds"])
    assert (result.exit_code, result.output) == (1, f"error: {message}\n")


def test_a_plugin_tableau_clashing_with_a_built_in_is_an_error_naming_both(installed):
    def clash() -> None:
        import rkcompile

        rkcompile.register_tableau(rkcompile.Tableau.from_text("RK4", ["0"], [["0"]], ["1"]))

    installed(entry_point("t", clash, dist="t-dist", version="1"))
    with pytest.raises(PluginError) as info:
        list_tableaux()
    assert str(info.value) == ("plugin t-dist 1 (entry point 't'): tableau 'rk4' is already registered (built in); "
                               "one of them must rename it")
    assert tableau_origin.__module__ == "rkcompile.tableaux"


def _nystrom2() -> None:
    """A plugin registering a multistep method: the explicit two-step Nyström method (order 2)."""
    from fractions import Fraction

    import rkcompile

    rkcompile.register_multistep(rkcompile.LinearMultistep("nystrom2", (Fraction(0), Fraction(1)),
                                                           (Fraction(2), Fraction(0)), startup="midpoint"))


def test_a_plugin_multistep_method_builds_and_is_listed_with_its_origin(installed):
    installed(entry_point("ny", _nystrom2, dist="ny-dist", version="2"))
    spec = parse_spec(json.dumps({"name": "t", "input": {"features": 4}, "output": {"classes": 3}, "stages": [
        {"module": {"kind": "mlp", "hidden": [3]}, "integrator": "nystrom2", "evaluations": 4}]}))
    assert spec.stages[0].tableau.name == "nystrom2" and build(spec)(torch.randn(2, 4)).shape == (2, 3)
    assert ("nystrom2", "plugin ny-dist 2 (entry point 'ny')") in plugins.registered()["multistep methods"]


def test_a_failing_plugin_leaves_no_multistep_method_behind(installed):
    def broken() -> None:
        _nystrom2()
        raise RuntimeError("half-way")

    installed(entry_point("ny", broken, dist="ny-dist", version="2"))
    with pytest.warns(PluginWarning, match="half-way"):
        names = plugins.registered()["multistep methods"]
    assert "nystrom2" not in dict(names) and "nystrom2" not in MULTISTEP


def test_two_plugins_with_one_name_clash(installed):
    installed(entry_point("a", _demo(), dist="first", version="1"), entry_point("b", _demo(), dist="second",
                                                                                    version="1"))
    with pytest.raises(PluginError) as info:
        "x" in FUNCTIONS  # noqa: B015
    assert str(info.value) == ("plugin second 1 (entry point 'b'): residual function 'gated-linear' is already "
                               "registered (plugin first 1 (entry point 'a')); one of them must rename it")


# ---------------------------------------------------------------- a real installation (slow)
def _run(command: list, cwd: Path, env: dict) -> subprocess.CompletedProcess:
    result = subprocess.run([str(c) for c in command], cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, f"{command}: {result.stdout}\n{result.stderr}"
    return result


@pytest.mark.slow
def test_an_installed_plugin_package_is_used_by_rkcompile_build(tmp_path):
    venv = tmp_path / "venv"
    env = {**{k: v for k, v in os.environ.items() if k != "VIRTUAL_ENV"}, "PYTHONPATH": str(ROOT)}
    _run([sys.executable, "-m", "venv", "--system-site-packages", "--without-pip", venv], tmp_path, env)
    python = venv / "bin" / "python"
    # --system-site-packages sees the base interpreter's packages; this environment's (torch, setuptools, pip) too:
    purelib = _run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], tmp_path, env)
    Path(purelib.stdout.strip(), "parent.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    source = shutil.copytree(PLUGIN, tmp_path / "demo-plugin")  # the build writes beside its sources: not here
    _run([python, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation", "--no-index", source],
         tmp_path, env)
    (tmp_path / "net.yaml").write_text(SPEC)
    built = _run([python, "-m", "rkcompile", "build", "net.yaml", "-o", "net.pt"], tmp_path, env).stdout
    total = next(line for line in built.splitlines() if line.startswith("total"))
    assert "ralston3" in built and total.split()[-1] == f"{6 * 48 + 14:,}"
    kinds = json.loads(_run([python, "-m", "rkcompile", "kinds", "--json"], tmp_path, env).stdout)
    origin = "plugin rkcompile-demo-plugin 0.1.0 (entry point 'demo')"
    assert {"name": "gated-linear", "from": origin} in kinds["residual functions"]
    assert {"name": "ralston3", "from": origin} in kinds["tableaux"]
    shown = _run([python, "-m", "rkcompile", "tableaux", "ralston3"], tmp_path, env).stdout
    assert "order 3" in shown
    # without the plugin the same spec is a located error naming the kind
    plain = subprocess.run([sys.executable, "-m", "rkcompile", "check", "net.yaml"], cwd=tmp_path, env=env,
                           capture_output=True, text=True)
    assert plain.returncode == 1 and plain.stderr.startswith("error: net.yaml:5:5: stages[0].module: unknown kind 'gated-linear'; expected one of")


def test_the_documented_plugin_is_the_demo_package():
    doc = (ROOT / "docs" / "spec.md").read_text()
    section = doc[doc.index("## Plugins"):doc.index("## More examples")]
    toml = section[section.index("```toml\n") + 8:]
    toml = toml[:toml.index("```")]
    pyproject = (PLUGIN / "pyproject.toml").read_text()
    assert all(line in pyproject for line in toml.splitlines())
    source = (PLUGIN / "rkcompile_demo_plugin.py").read_text()
    assert 'rkcompile.register_tableau(rkcompile.Tableau.from_text(\n        "ralston3", ["0", "1/2", "3/4"]' in source
    assert 'rkcompile.register_tableau(rkcompile.Tableau.from_text(\n        "ralston3", ["0", "1/2", "3/4"]' in section
