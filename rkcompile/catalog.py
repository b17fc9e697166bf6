"""The shipped specs: the papers' networks, found by name (`build("ho-resnet58-rk4")`) in an installed wheel or a checkout.

`specs/` at the repository root is the one source of truth; the wheel maps it to the package `rkcompile.specs`
(setup.py's `package_dir`), so an installed package finds the files next to its modules and a checkout finds them
one directory up.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from rkcompile.errors import SpecError, did_you_mean

__all__ = ["SpecEntry", "specs_dir", "spec_names", "spec_path", "resolve", "list_specs"]

_SUFFIX = ".yaml"
# the first citation in a spec's header comment: "Luo et al. 2022", "Feldhausen and Vallbo", "He et al. 2016"
_CITATION = re.compile(r"[A-Z][a-z]+ (?:et al\.|and [A-Z][a-z]+)(?: \d{4})?")


@dataclass(frozen=True)
class SpecEntry:
    """One shipped spec: its name, the paper its header comment cites first, and its parameter count."""

    name: str
    source: str
    parameters: int
    path: Path


def specs_dir() -> Path:
    """The directory holding the shipped specs (inside the installed package, else the checkout's specs/)."""
    here = Path(__file__).resolve().parent
    installed = here / "specs"
    return installed if installed.is_dir() else here.parent / "specs"


def spec_names() -> list[str]:
    """Names of the shipped specs (file names without .yaml), sorted."""
    folder = specs_dir()
    return sorted(p.name[: -len(_SUFFIX)] for p in folder.glob(f"*{_SUFFIX}")) if folder.is_dir() else []


def spec_path(name: str) -> Path:
    """The file of the shipped spec `name`; a one-line SpecError suggesting the nearest name if there is none."""
    names = spec_names()
    if name not in names:
        raise SpecError(f"no such file, and no shipped spec of that name{did_you_mean(name, names)}"
                        " (`rkcompile specs` lists them)", file=name)
    return specs_dir() / f"{name}{_SUFFIX}"


def resolve(path_or_text):
    """Turn a shipped spec's name into its path; paths (existing or path-like), YAML text and objects pass through.

    A path always wins over a name: `ho-resnet58-rk4` is looked up among the shipped specs only when no file of
    that name exists; anything with a directory separator or a suffix is a path and is left to the reader.
    """
    if not isinstance(path_or_text, str) or "\n" in path_or_text or ":" in path_or_text or not path_or_text:
        return path_or_text
    candidate = Path(path_or_text)
    if "/" in path_or_text or "\\" in path_or_text or candidate.suffix or candidate.exists():
        return path_or_text
    return spec_path(path_or_text)


def list_specs() -> list[SpecEntry]:
    """Every shipped spec with its source paper and parameter count (built on the meta device: no memory, no data)."""
    import torch

    from rkcompile.compiler import build

    entries = []
    for name in spec_names():
        path = specs_dir() / f"{name}{_SUFFIX}"
        with torch.device("meta"):
            model = build(path)
        entries.append(SpecEntry(name, _source_paper(path), sum(p.numel() for p in model.parameters()), path))
    return entries


def _source_paper(path: Path) -> str:
    """The first citation in the spec's leading comment block, or '-' when it cites none."""
    header = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.startswith("#"):
            break
        if "yaml-language-server" not in line:
            header.append(line.lstrip("# "))
    match = _CITATION.search(" ".join(header))
    return match.group(0) if match else "-"
