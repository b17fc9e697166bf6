"""The `rkcompile` command line: argument parsing only; the work is done by the library."""

from __future__ import annotations

import json
import sys
import traceback

import click

from rkcompile.errors import RkcompileError
from rkcompile.texttable import text_table

__all__ = ["main", "cli"]


class _Group(click.Group):
    """A click group that prints library errors on one line (exit 1) instead of a traceback."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except RkcompileError as e:
            if ctx.params.get("debug"):
                traceback.print_exc()
            click.echo(f"error: {e}", err=True)
            ctx.exit(1)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--debug", is_flag=True, help="Show the Python traceback of an error.")
@click.version_option(package_name="rkcompile")
def cli(debug: bool) -> None:
    """Compile YAML specs of residual networks (as Runge-Kutta integrators) to torch.fx, and draw them."""


def table(rows: list[list[object]], header: list[str]) -> str:
    """Render rows as a plain left-aligned text table."""
    return text_table(rows, header)


@cli.command()
@click.argument("name", required=False)
def tableaux(name: str | None) -> None:
    """List the built-in tableaux, or show one (c, A, b as exact fractions) by NAME."""
    from rkcompile.tableaux import get_tableau, list_tableaux

    if name:
        click.echo(get_tableau(name).describe())
        return
    rows = []
    for n in list_tableaux():
        t = get_tableau(n)
        rows.append([n, t.stages, t.pruned().stages, t.order, t.embedded_order or "-", t.source.split(",")[0]])
    click.echo(table(rows, ["name", "stages", "evaluated", "order", "embedded", "source"]))
    click.echo("(evaluated: evaluations of F per step once stages that never reach the output are pruned)")


@cli.command()
@click.argument("specs", nargs=-1, required=True, type=click.Path(dir_okay=False))
@click.option("--set", "overrides", multiple=True, metavar="PATH=VALUE", help="Override one field, e.g. stages.0.integrator=rk4.")
def check(specs: tuple[str, ...], overrides: tuple[str, ...]) -> None:
    """Validate each SPEC and print a per-stage summary; exit 1 if any is invalid."""
    from rkcompile.load import load_spec

    failed = 0
    for path in specs:
        try:
            spec = load_spec(path, overrides)
        except RkcompileError as e:
            if click.get_current_context().find_root().params.get("debug"):
                traceback.print_exc()
            click.echo(f"error: {e}", err=True)
            failed += 1
            continue
        click.echo(f"{path}: ok ({spec.name})")
        click.echo(_indent(stage_table(spec)))
    if failed:
        click.echo(f"{failed} of {len(specs)} spec{'s' if len(specs) > 1 else ''} invalid", err=True)
        sys.exit(1)


def stage_table(spec) -> str:
    """Per-stage summary: integrator, weights, blocks, evaluations, step size."""
    from rkcompile.exact import format_coefficient
    from rkcompile.lowering_registers import stage_lowering

    rows, lowerings, groups = [], [], []
    for n, s in enumerate(spec.stages):
        t = s.tableau
        weights = s.weights.kind + (f"({s.weights.pieces})" if s.weights.kind == "basis" else "")
        rows.append([s.name or n, s.width or "-", s.entry.kind, s.module.kind, f"{t.name} (order {t.order})", weights,
                     s.blocks, s.total_evaluations, format_coefficient(s.h)])
        choice = stage_lowering(s)
        lowerings.append(f"{choice.lowering} ({choice.registers} live"
                         + (f", {choice.extra_axpys:+d} axpys/step)" if choice.extra_axpys else ")"))
        groups.append(", ".join(f"{a}" if a == b else f"{a}-{b}" for a, b in s.checkpoint) if s.checkpoint else "none")
    header = ["stage", "width", "entry", "module", "integrator", "weights", "blocks", "evaluations", "h"]
    # the columns appear where they say something: a stage lowered with minimal registers, or checkpointed blocks
    if any(not text.startswith("accumulate") for text in lowerings):
        header.append("lowering")
        rows = [[*row, text] for row, text in zip(rows, lowerings, strict=True)]
    if any(text != "none" for text in groups):
        header.append("checkpoint")
        rows = [[*row, text] for row, text in zip(rows, groups, strict=True)]
    return table(rows, header)


def _indent(text: str) -> str:
    return "\n".join("  " + line for line in text.splitlines())


@cli.command()
@click.argument("spec", type=click.Path(dir_okay=False))
@click.option("-o", "--output", type=click.Path(dir_okay=False), help="Save the model (spec + weights) to this .pt file.")
@click.option("--code", type=click.Path(dir_okay=False), help="Write the generated forward() code to this file.")
@click.option("--set", "overrides", multiple=True, metavar="PATH=VALUE", help="Override one field, e.g. stages.0.integrator=rk4.")
def build(spec: str, output: str | None, code: str | None, overrides: tuple[str, ...]) -> None:
    """Compile SPEC to a torch.fx GraphModule and print its blocks, evaluations and parameters."""
    from rkcompile.compiler import build as compile_spec
    from rkcompile.summary import units

    model = compile_spec(spec, list(overrides))
    from rkcompile.model import parameter_count

    rows = [[u.label, u.integrator, u.evaluations or "-", f"{u.parameters:,}"] for u in units(model)]
    total = parameter_count(model)
    rows.append(["total", "", sum(u.evaluations for u in units(model)), f"{total:,}"])
    click.echo(f"{model.spec.name}: {len(model.graph.nodes)} graph nodes")
    click.echo(table(rows, ["unit", "integrator", "evaluations", "parameters"]))
    if code:
        header = f"# forward() of the torch.fx GraphModule compiled by rkcompile from {spec}\nimport torch\n"
        _write_text(code, header + model.code)
        click.echo(f"wrote {code}")
    if output:
        from rkcompile.artifact import save

        save(model, output)
        click.echo(f"wrote {output}")


def _write_text(path: str, text: str) -> None:
    """Write a file the user named, turning OS errors into one-line errors."""
    try:
        with open(path, "w", encoding="utf-8") as f:
            f.write(text)
    except OSError as e:
        raise click.ClickException(f"cannot write {path}: {e.strerror}") from None


@cli.command()
@click.argument("source", metavar="SPEC|MODEL.pt", type=click.Path(exists=True, dir_okay=False))
@click.option("--batch", default=1, show_default=True, type=click.IntRange(min=1), help="Batch size of the memory figures.")
@click.option("--measure", is_flag=True, help="Also run one real forward and backward on CPU and measure.")
@click.option("--set", "overrides", multiple=True, metavar="PATH=VALUE", help="Override one field, e.g. stages.0.integrator=rk4.")
def analyze(source: str, batch: int, measure: bool, overrides: tuple[str, ...]) -> None:
    """Print parameters, inference peak, saved-for-backward, training peak and FLOPs per unit, with ratios to Euler."""
    from pathlib import Path

    from rkcompile.analysis import analyze as run
    from rkcompile.cli_draw import load_model

    model = load_model(Path(source), overrides)
    report = run(model, batch=batch, measure=measure)
    click.echo(report.table())
    from rkcompile.lowering_registers import lowering_note

    for line in lowering_note(model, batch):
        click.echo(line)


@cli.command()
def schema() -> None:
    """Print the JSON Schema of the spec language (for editor validation)."""
    from rkcompile.spec import Spec

    click.echo(json.dumps(Spec.model_json_schema(), indent=2))


def _register() -> None:
    """Add the commands that live in their own modules (drawing, transformations)."""
    from rkcompile.cli_draw import draw
    from rkcompile.cli_plan import plan
    from rkcompile.cli_transform import COMMANDS

    for command in (draw, plan, *COMMANDS):
        cli.add_command(command)


_register()


def main() -> None:
    """Entry point of the console script."""
    cli(prog_name="rkcompile")
