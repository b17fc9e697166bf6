"""Regenerate the gallery: every spec in specs/ drawn at network level (batch 1), with its memory table.

    .venv/bin/python gallery/make.py           # write gallery/<spec>.svg, .dot, README.md and the HTML views
    .venv/bin/python gallery/make.py --check   # exit 1, listing stale files, if regenerating would change them

The check compares the DOT sources and README.md (text rkcompile writes byte for byte); the SVGs are
laid out by graphviz's `dot`, whose output differs between graphviz versions, so for them (and for the
interactive HTML views of the specs in VIEWS, which embed such SVGs) the check only requires that they exist. Nothing written depends on the date, the machine or absolute paths.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

GALLERY = Path(__file__).resolve().parent
ROOT = GALLERY.parent
SPECS = ROOT / "specs"
BATCH = 1
LEVEL = "network"
#: Specs that also get an interactive view, gallery/<spec>.html (one per family keeps the gallery small).
VIEWS = ("continuousnet-2-2-2", "continuousnet-8-8-8", "ho-resnet58-rk4", "ho-resnet58-verner89", "resnet50-imagenet")


def sources(specs: Path = SPECS) -> tuple[dict[str, str], dict[str, str]]:
    """The gallery's text files ({name: content}: each spec's DOT source, README.md) and the specs that failed."""
    from rkcompile.compiler import build
    from rkcompile.render.dot import dot_source
    from rkcompile.render.metrics import measure

    files: dict[str, str] = {}
    failed: dict[str, str] = {}
    entries = []
    for path in sorted(specs.glob("*.yaml")):
        try:
            model = build(path)
            measures = measure(model, batch=BATCH)
        except Exception as e:  # one broken spec must not hide the others: reported, and the exit status is 1
            failed[f"specs/{path.name}"] = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
            continue
        files[f"{path.stem}.dot"] = dot_source(model, measures, level=LEVEL)
        entries.append((path, model, measures))
    files["README.md"] = readme(entries)
    return files, failed


def readme(entries: list) -> str:
    """The gallery index: one line per spec, then each spec's drawing and per-stage memory table."""
    from rkcompile.render.metrics import flops, size
    from rkcompile.render.structure import read_blocks

    lines = ["# Gallery", "",
             f"Every spec in `specs/`, compiled and drawn at {LEVEL} level (batch {BATCH}, float32): one box per",
             "block (consecutive blocks of one structure drawn once, marked ×N), each evaluation k_i with its weights and",
             "time t_n + c_i·h, edges labelled a_ij·h and b_i·h, the skip connection in bold, blocks coloured by",
             "inference peak. Regenerate with `.venv/bin/python gallery/make.py`; `--check` lists stale files.", "",
             "Interactive views (one self-contained HTML file each: zoom, expand stage → block → evaluation → layer,",
             "details, search, colour scale): " + ", ".join(f"[{v}]({v}.html)" for v in VIEWS) + ".", "",
             "![the interactive view of continuousnet-8-8-8](view-continuousnet-8-8-8.png)", "",
             "| spec | integrator(s) | parameters | evaluations |", "|---|---|---:|---:|"]
    sections = []
    for path, model, measures in entries:
        spec = model.spec
        integrators = ", ".join(dict.fromkeys(s.tableau.name for s in spec.stages))
        evaluations = sum(len(b.evaluations) for b in read_blocks(model))
        lines.append(f"| [{spec.name}](#{_anchor(spec.name)}) | {integrators} | {measures.total.parameters:,} "
                     f"| {evaluations} |")
        rows = ["| unit | integrator | parameters | inference peak | saved for backward | FLOPs |",
                "|---|---|---:|---:|---:|---:|"]
        for label, row, scheme in _rows(spec, measures):
            rows.append(f"| {label} | {scheme} | {row.parameters:,} | {size(row.inference_peak)} "
                        f"| {size(row.saved_bytes)} | {flops(row.flops)} |")
        sections += ["", f"## {spec.name}", "",
                     f"`specs/{path.name}` — {integrators}; {measures.total.parameters:,} parameters; "
                     f"{evaluations} evaluations of F.", "",
                     f"![{spec.name}]({path.stem}.svg)", "", *rows]
    return "\n".join(lines + sections) + "\n"


def _rows(spec, measures):
    """(label, numbers, integrator) for the stem, each stage, the head and the total, as far as present."""
    if "stem" in measures.blocks:
        yield "stem", measures.blocks["stem"], ""
    for n, stage in enumerate(spec.stages):
        if n in measures.stages:
            yield stage.name or f"stage{n}", measures.stages[n], stage.tableau.name
    if "head" in measures.blocks:
        yield "head", measures.blocks["head"], ""
    yield "**total**", measures.total, ""


def _anchor(name: str) -> str:
    return "".join(c for c in name.lower() if c.isalnum() or c in "-_ ").replace(" ", "-")


def stale(gallery: Path = GALLERY, specs: Path = SPECS) -> list[str]:
    """Paths that regenerating would change (differing or missing text, missing SVGs, leftovers of removed
    specs), and specs that cannot be drawn."""
    files, failed = sources(specs)
    out = [name for name, text in files.items()
           if not (gallery / name).is_file() or (gallery / name).read_text(encoding="utf-8") != text]
    stems = {Path(name).stem for name in files if name.endswith(".dot")}
    out += [f"{stem}.svg" for stem in sorted(stems) if not (gallery / f"{stem}.svg").is_file()]
    out += [f"{stem}.html" for stem in VIEWS if stem in stems and not (gallery / f"{stem}.html").is_file()]
    out += [p.name for p in sorted(gallery.glob("*.svg")) + sorted(gallery.glob("*.dot")) if p.stem not in stems]
    out += [p.name for p in sorted(gallery.glob("*.html")) if p.stem not in VIEWS]
    return [f"gallery/{name}" for name in sorted(set(out))] + [f"{name} (cannot be drawn: {why})"
                                                                 for name, why in failed.items()]


def write(gallery: Path = GALLERY, specs: Path = SPECS) -> tuple[list[str], dict[str, str]]:
    """Regenerate every file of the gallery; return the names written and the specs that could not be drawn."""
    from rkcompile.compiler import build
    from rkcompile.files import write_file
    from rkcompile.render import render_bytes
    from rkcompile.render.html import html_view

    files, failed = sources(specs)
    stems = {Path(name).stem for name in files if name.endswith(".dot")}
    for old in sorted(gallery.glob("*.svg")) + sorted(gallery.glob("*.dot")):
        if old.stem not in stems:  # the drawing of a spec that no longer exists
            old.unlink()
    for name, text in files.items():
        write_file(gallery / name, text)
        if name.endswith(".dot"):
            write_file(gallery / f"{Path(name).stem}.svg", render_bytes(text, "svg"))
    for old in sorted(gallery.glob("*.html")):
        if old.stem not in VIEWS:
            old.unlink()
    for stem in VIEWS:
        if stem in stems:
            html = html_view(build(specs / f"{stem}.yaml"), batch=BATCH, level=LEVEL)
            write_file(gallery / f"{stem}.html", html)
    return sorted(files), failed


def main(argv: list[str] | None = None) -> int:
    """Command line: regenerate the gallery, or with --check report stale files (exit 1)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="list stale files and exit 1 if any; write nothing")
    args = parser.parse_args(argv)
    if args.check:
        names = stale()
        for name in names:
            print(f"stale: {name}")
        if names:
            print("regenerate with: .venv/bin/python gallery/make.py", file=sys.stderr)
        return 1 if names else 0
    names, failed = write()
    for name in names:
        print(f"wrote gallery/{name}")
    for name, why in failed.items():
        print(f"error: {name} cannot be drawn: {why}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    sys.exit(main())
