"""`rkcompile draw`: argument parsing for the renderer and the memory plot (the work is in the library)."""

from __future__ import annotations

from pathlib import Path

import click

from rkcompile.cli_options import BATCH, limit_options, limits_from

__all__ = ["draw", "resolve_output", "load_model", "LEVELS", "FORMATS", "RANKDIRS", "COLOR_BY", "TABLEAU_VIEWS"]

# rkcompile.render's choices (a test checks they agree): importing render here would import torch
# for every command, `check` and `schema` included
LEVELS = ("network", "stage", "block")
FORMATS = ("dot", "html", "pdf", "png", "svg")
RANKDIRS = ("TB", "LR")
COLOR_BY = ("inference", "saved", "training", "flops")
TABLEAU_VIEWS = ("auto", "dag", "matrix")
#: What `draw` and `analyze` read: a spec (YAML, or JSON, its subset), a saved model, or a shipped spec's name
SOURCE_SUFFIXES = (".yaml", ".yml", ".json", ".pt", "")


@click.command()
@click.argument("source", metavar="SPEC|MODEL.pt", type=click.Path(dir_okay=False))
@click.option("-o", "--output", type=click.Path(), help="Drawing to write: .svg, .png, .pdf, .dot (needs no graphviz) or .html (interactive, self-contained).")
@click.option("--level", type=click.Choice(LEVELS), default="network", show_default=True,
              help="network: identical consecutive blocks drawn once as ×N; stage: one box per stage; block: every block.")
@click.option("--batch", type=BATCH, default=1, show_default=True, help="Batch size of the memory figures.")
@click.option("--format", "fmt", metavar="F", help=f"Output format when the suffix does not say it: {', '.join(FORMATS)}.")
@click.option("--set", "overrides", multiple=True, metavar="PATH=VALUE", help="Override one spec field, e.g. stages.0.integrator=rk4.")
@click.option("--memory-plot", type=click.Path(), metavar="OUT.png", help="Also plot memory per stage under each scheme (PNG).")
@click.option("--schemes", default="euler,midpoint,rk4,verner89", show_default=True,
              help="Comma-separated schemes for --memory-plot.")
@click.option("--shapes", is_flag=True, help="Label edges with tensor shapes (batch first).")
@click.option("--rankdir", type=click.Choice(RANKDIRS), default="TB", show_default=True,
              help="TB: top to bottom; LR: left to right.")
@click.option("--color-by", type=click.Choice(COLOR_BY), default="inference", show_default=True,
              help="What the fill colour shows: inference peak, saved for backward, training peak or FLOPs.")
@click.option("--tableau-view", type=click.Choice(TABLEAU_VIEWS), default="auto", show_default=True,
              help="Steps as a DAG of k_i, as a Butcher-matrix heat-map, or auto (the matrix for dense tableaux).")
@click.option("--force", is_flag=True, help="Overwrite an existing file that -o did not name exactly (a directory or a suffix-less -o).")
@limit_options
def draw(source: str, output: str | None, level: str, batch: int, fmt: str | None, overrides: tuple[str, ...],
         memory_plot: str | None, schemes: str, shapes: bool, rankdir: str, color_by: str, tableau_view: str,
         force: bool, **options) -> None:
    """Draw SPEC (or a saved MODEL.pt): one box per block, RK coefficients on the edges, memory beside each block."""
    from rkcompile.files import check_target
    from rkcompile.render import RenderError, check_writable, output_format
    from rkcompile.render import draw as draw_model

    src = Path(source)
    if output is None and memory_plot is None:
        raise click.UsageError("nothing to write: give -o OUT.svg (or .png, .pdf, .dot) and/or --memory-plot OUT.png")
    out = resolve_output(Path(output), fmt, src, force) if output is not None else None
    plot = resolve_output(Path(memory_plot), "png", src, force) if memory_plot is not None else None
    if out is not None:
        fmt = output_format(out, fmt)
        check_writable(out)
        check_target(out, inputs=[src])
    if plot is not None:
        if plot.suffix.lower() != ".png":
            raise RenderError(f"--memory-plot writes a PNG: name it {plot.with_suffix('.png')}")
        if out is not None and _same(plot, out):
            raise RenderError(f"-o and --memory-plot both name {out}")
        check_writable(plot)
        check_target(plot, inputs=[src])
    model = load_model(src, overrides, limits_from(options), device="meta")  # shapes and counts only: no weights
    if out is not None:
        draw_model(model, out, level=level, batch=batch, format=fmt, inputs=[src], shapes=shapes, rankdir=rankdir,
                   color_by=color_by, tableau_view=tableau_view)
        click.echo(f"wrote {out} ({level} level, batch {batch})")
    if plot is not None:
        from rkcompile.memory_plot import memory_plot as plot_memory
        from rkcompile.memory_plot import scheme_memory

        names = [s.strip() for s in schemes.split(",") if s.strip()]
        data = scheme_memory(model.spec, names, batch)
        plot_memory(model.spec, plot, schemes=names, batch=batch, inputs=[src], data=data)
        click.echo(f"wrote {plot} (memory per stage: {data.summary()})")


def resolve_output(path: Path, fmt: str | None, source: Path, force: bool) -> Path:
    """The file to write for `-o PATH`: PATH itself, or a name derived from it (which needs --force to replace).

    A directory gets `<spec stem>.<format>`, a suffix-less PATH gets `.<format>`. The input file is never
    a valid output, with or without --force.
    """
    from rkcompile.render import RenderError

    derived = path
    if path.is_dir():
        derived = path / f"{source.stem}.{(fmt or 'svg').lower().lstrip('.')}"
    elif not path.suffix and fmt:
        derived = path.with_suffix(f".{fmt.lower().lstrip('.')}")
    if _same(derived, source):
        raise RenderError(f"refusing to overwrite the input file {source}")
    if derived != path and derived.exists() and not force:
        raise RenderError(f"{derived} exists and was not named with -o: name it exactly, or pass --force")
    return derived


def _same(a: Path, b: Path) -> bool:
    """True when two paths name the same file (through links, hard links and relative parts)."""
    from rkcompile.files import same_file

    return same_file(a, b)


def load_model(source: Path, overrides: tuple[str, ...], limits=None, device=None):
    """Compile a spec (on `device`), or load a saved model; --set re-compiles the saved model's spec with the changes."""
    from rkcompile.errors import RkcompileError
    from rkcompile.load import parse_overrides

    if source.suffix.lower() not in SOURCE_SUFFIXES:  # a shipped spec's name has none
        raise RkcompileError(f"{source}: expected a .yaml spec or a .pt model, found a {source.suffix} file")
    from rkcompile.model import as_model

    if overrides:
        parse_overrides(overrides)  # a malformed PATH=VALUE is refused before any work
    return as_model(source, list(overrides) or None, limits=limits, device=device)  # as written: errors are located at the --set
