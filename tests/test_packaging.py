"""The built wheel in a fresh virtual environment: specs by name, build and ONNX export from outside the repository.

The fresh venv gets the wheel (with its `export` extra from the package index) and nothing of the dev extras. Its
heavy binary dependencies (torch, torchvision, ...) are not reinstalled (gigabytes, minutes): a .pth file puts a
directory of links to this environment's installed distributions on its path, leaving out rkcompile itself, pip,
setuptools, the dev and export extras, so pip must still resolve every dependency the wheel declares.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).parent.parent
# what a clean environment would not have: rkcompile (the editable install), the installers, dev and export extras
NOT_SHARED = re.compile(r"(_*editable_*|_?rkcompile|pip|setuptools|wheel|_?pytest|pluggy|iniconfig|hypothesis|ruff|"
                        r"xdist|execnet|nodepy|jsonschema|referencing|rpds|sklearn|scikit_learn|scipy|matplotlib|"
                        r"onnx|tqdm|torchdiffeq|lightning)", re.IGNORECASE)


def _run(command: list, cwd: Path, timeout: int = 600) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    result = subprocess.run([str(c) for c in command], cwd=cwd, env=env, capture_output=True, text=True,
                            timeout=timeout)
    assert result.returncode == 0, f"{command}: {result.stdout}\n{result.stderr}"
    return result


def _source_copy(tmp: Path) -> Path:
    """Only what the wheel is built from (no stale build/ directory, no tests): pyproject, setup.py, package, specs."""
    src = tmp / "src"
    src.mkdir()
    for name in ("pyproject.toml", "setup.py", "README.md"):
        shutil.copy(ROOT / name, src / name)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    shutil.copytree(ROOT / "rkcompile", src / "rkcompile", ignore=ignore)
    shutil.copytree(ROOT / "specs", src / "specs", ignore=ignore)
    return src


def _shared_site(tmp: Path) -> Path:
    """A directory of links to this environment's site-packages entries, without NOT_SHARED."""
    shared = tmp / "shared-site"
    shared.mkdir()
    site = Path(sysconfig.get_paths()["purelib"])
    for entry in site.iterdir():
        if not NOT_SHARED.match(entry.name) and not entry.name.endswith(".pth"):
            (shared / entry.name).symlink_to(entry)
    return shared


@pytest.mark.slow
def test_wheel_installs_and_builds_and_exports_by_name_outside_the_repo(tmp_path):
    src = _source_copy(tmp_path)
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", tmp_path / "dist",
          src], cwd=tmp_path)
    (wheel,) = (tmp_path / "dist").glob("rkcompile-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    shipped = sorted(n for n in names if n.startswith("rkcompile/specs/"))
    assert shipped == sorted(f"rkcompile/specs/{p.name}" for p in (ROOT / "specs").glob("*.yaml"))

    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", venv], cwd=tmp_path)
    python, bin_dir = venv / "bin" / "python", venv / "bin"
    purelib = _run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], cwd=tmp_path)
    Path(purelib.stdout.strip(), "shared.pth").write_text(f"{_shared_site(tmp_path)}\n")
    _run([python, "-m", "pip", "install", "-q", f"{wheel}[export]"], cwd=tmp_path)

    outside = tmp_path / "elsewhere"
    outside.mkdir()
    where = _run([python, "-c", "import rkcompile; print(rkcompile.__file__)"], cwd=outside).stdout.strip()
    assert Path(where).is_relative_to(venv)
    missing = _run([python, "-c", "import importlib.util as u; print([m for m in ('pytest', 'hypothesis', 'sklearn', "
                                  "'jsonschema') if u.find_spec(m)])"], cwd=outside)
    assert missing.stdout.strip() == "[]"  # no dev extra leaked in

    version = _run([bin_dir / "rkcompile", "--version"], cwd=outside).stdout
    assert version.startswith("rkcompile, version ")
    built = _run([bin_dir / "rkcompile", "build", "ho-resnet58-rk4", "-o", "m.pt"], cwd=outside).stdout
    assert "2,074,058" in built and (outside / "m.pt").is_file()
    exported = _run([bin_dir / "rkcompile", "export", "m.pt", "-o", "m.onnx"], cwd=outside).stdout
    assert exported == "wrote m.onnx (ONNX)\n"
    check = ("import numpy as np, onnxruntime as ort, torch, rkcompile\n"
             "m = rkcompile.load('m.pt').eval()\n"
             "same = rkcompile.build('ho-resnet58-rk4')\n"
             "x = torch.randn(3, 3, 32, 32)\n"
             "s = ort.InferenceSession('m.onnx', providers=['CPUExecutionProvider'])\n"
             "out = s.run(None, {s.get_inputs()[0].name: x.numpy()})[0]\n"
             "print(float(np.abs(out - m(x).detach().numpy()).max()), "
             "sum(p.numel() for p in same.parameters()))\n")
    diff, parameters = _run([python, "-c", check], cwd=outside).stdout.split()
    assert float(diff) <= 1e-5 and parameters == "2074058"
    listing = _run([bin_dir / "rkcompile", "specs"], cwd=outside).stdout
    assert "continuousnet-8-8-8" in listing and "Queiruga et al. 2020" in listing
