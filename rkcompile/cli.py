"""The `rkcompile` command line: argument parsing only; the work is done by the library."""

from __future__ import annotations

import json
import signal
import sys
import traceback
from collections.abc import Sequence
from typing import TYPE_CHECKING, cast

import click

from rkcompile import __version__
from rkcompile.cautions import one_line_warnings
from rkcompile.cli_options import BATCH, DTYPES, OPTIMIZER_NAMES, limit_options, limits_from
from rkcompile.errors import RkcompileError
from rkcompile.texttable import text_table

if TYPE_CHECKING:
    from rkcompile.spec import Spec

__all__ = ["main", "cli"]


class _Group(click.Group):
    """A click group that prints library errors on one line (exit 1) and anything unexpected as one line (exit 3)."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        """Accept --debug after the subcommand too (`rkcompile check --debug x.yaml`)."""
        end = args.index("--") if "--" in args else len(args)
        if "--debug" in args[1:end]:
            args = ["--debug"] + [a for i, a in enumerate(args) if not (a == "--debug" and i < end)]
        return super().parse_args(ctx, args)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """List every command with its whole first sentence, wrapped, never cut off with '...'."""
        rows = []
        for name in self.list_commands(ctx):
            command = self.get_command(ctx, name)
            if command is not None and not command.hidden:
                rows.append((name, command.get_short_help_str(limit=10_000)))
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)

    def invoke(self, ctx: click.Context):
        try:
            with one_line_warnings():
                return super().invoke(ctx)
        except RkcompileError as e:
            if ctx.params.get("debug"):
                traceback.print_exc()
            click.echo(f"error: {e}", err=True)
            ctx.exit(1)
        except (click.ClickException, click.exceptions.Exit, click.Abort):
            raise
        except Exception as e:  # a bug: still one line, and the traceback on request
            if ctx.params.get("debug"):
                traceback.print_exc()
            detail = " ".join(str(e).split())[:300]
            click.echo(f"internal error: {type(e).__name__}{': ' + detail if detail else ''} (run with --debug)",
                       err=True)
            ctx.exit(3)


# the command list shows each command's whole first sentence (click cuts short help at 45 characters)
@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 120})
@click.option("--debug", is_flag=True, help="Show the Python traceback of an error.")
@click.version_option(__version__, prog_name="rkcompile")
def cli(debug: bool) -> None:
    """Compile YAML specs of residual networks (as Runge-Kutta integrators) to torch.fx, and draw them."""


def table(rows: Sequence[Sequence[object]], header: list[str]) -> str:
    """Render rows as a plain left-aligned text table."""
    return text_table(rows, header)


@cli.command()
@click.argument("names", metavar="[NAME]...", nargs=-1)
@click.option("--plot", type=click.Path(dir_okay=False), metavar="OUT.png|svg",
              help="Plot the linear stability region of each NAME, side by side.")
def tableaux(names: tuple[str, ...], plot: str | None) -> None:
    """List the built-in tableaux, or show each NAME (c, A, b as exact fractions, stability, error coefficient)."""
    from rkcompile.stability import real_extent, runge_kutta
    from rkcompile.tableaux import get_tableau, list_tableaux

    if plot and not names:
        raise click.UsageError("--plot needs at least one NAME, e.g. rkcompile tableaux euler rk4 --plot out.png")
    if names:
        methods = [runge_kutta(get_tableau(n)) for n in names]
        for n, m in zip(names, methods, strict=True):
            click.echo(get_tableau(n).describe())
            click.echo(f"stability: R(z) = {m.text()}; real axis [-{real_extent(m):.6f}, 0]; "
                       f"principal error coefficient {m.error_coefficient:.4e} (order {m.order})")
        if plot:
            from rkcompile.stability_plot import stability_plot

            click.echo(f"wrote {stability_plot(methods, plot)}")
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
@limit_options
def check(specs: tuple[str, ...], overrides: tuple[str, ...], **options) -> None:
    """Validate each SPEC and print a per-stage summary; exit 1 if any is invalid.

    "ok" means the spec builds within the limits: the arithmetic bound always, and the exact count on the
    meta device (no memory) when the bound comes close to a limit.
    """
    from rkcompile.limits import check_exact, estimate, needs_exact
    from rkcompile.load import load_spec

    limits = limits_from(options)
    failed = 0
    for path in specs:
        try:
            spec = load_spec(path, overrides, limits=limits)
            if needs_exact(estimate(spec), limits):
                check_exact(spec, limits)
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
    from rkcompile.registers import stage_lowering

    rows, lowerings, groups = [], [], []
    for n, s in enumerate(spec.stages):
        t = s.tableau
        module = s.module.label() + (f", t: {s.time.label()}" if s.time.active else "")  # F(y, t)
        width = s.width or f"{spec.plan.stages[n].shape.width} (inherited)"
        rows.append([s.name or n, width, s.entry.kind, module, f"{t.name} (order {t.order})",
                     s.weights.label(),
                     s.blocks, s.total_evaluations, _step_size(s)])
        choice = stage_lowering(s)
        lowerings.append("accumulate" if choice is None else f"{choice.lowering} ({choice.registers} live"
                         + (f", {choice.extra_axpys:+d} axpys/step)" if choice.extra_axpys else ")"))
        groups.append(", ".join(f"{a}" if a == b else f"{a}-{b}" for a, b in s.checkpoint) if s.checkpoint else "none")
    header = ["stage", "width", "entry", "module", "integrator", "weights", "blocks", "evaluations", "h"]
    # the columns appear where they say something: learned steps (and their controllers), skip-init scalars, a
    # step scaled by epsilon, a stage lowered with minimal registers, checkpointed blocks,
    # reversible backprop
    for name, cells in _step_columns(spec.stages):
        header.append(name)
        rows = [[*row, text] for row, text in zip(rows, cells, strict=True)]
    if any(not text.startswith("accumulate") for text in lowerings):
        header.append("lowering")
        rows = [[*row, text] for row, text in zip(rows, lowerings, strict=True)]
    if any(text != "none" for text in groups):
        header.append("checkpoint")
        rows = [[*row, text] for row, text in zip(rows, groups, strict=True)]
    if any(s.backprop != "saved" for s in spec.stages):
        header.append("backprop")
        rows = [[*row, s.backprop] for row, s in zip(rows, spec.stages, strict=True)]
    return table(rows, header)


def _step_size(stage) -> str:
    """h as the spec wrote it: `h: 0.1` shows 0.1, `T: 1` over 3 steps 1/3."""
    from rkcompile.exact import display_coefficient, is_decimal_text

    given = stage.step.h if stage.step.h is not None else stage.step.T
    return display_coefficient(stage.h, given is not None and is_decimal_text(given.text))


def _step_columns(stages) -> list[tuple[str, list[str]]]:
    """The step columns some stage needs: 'learned h' (with its controller), 'skip_init', 'epsilon'."""
    from rkcompile.exact import format_coefficient

    learned = []
    for s in stages:
        step = s.step
        text = "no" if step.learn == "none" else {"scalar": "per block", "channel": "per block and channel"}[step.learn]
        if step.controller != "none":
            text += f", {step.controller} controller (reduction {step.reduction})"
        if step.frozen:
            text += ", frozen"
        learned.append(text)
    skip = ["per F, from 0" if s.step.skip_init else "no" for s in stages]
    epsilon = [format_coefficient(s.step.epsilon.value) for s in stages]
    columns = [("learned h", learned, "no"), ("skip_init", skip, "no"), ("epsilon", epsilon, "1")]
    return [(name, cells) for name, cells, default in columns if any(c != default for c in cells)]


def _indent(text: str) -> str:
    return "\n".join("  " + line for line in text.splitlines())


@cli.command()
@click.argument("spec", type=click.Path(dir_okay=False))
@click.option("-o", "--output", type=click.Path(dir_okay=False), help="Save the model (spec + weights) to this .pt file.")
@click.option("--code", type=click.Path(dir_okay=False), help="Write the generated forward() code to this file.")
@click.option("--set", "overrides", multiple=True, metavar="PATH=VALUE", help="Override one field, e.g. stages.0.integrator=rk4.")
@limit_options
def build(spec: str, output: str | None, code: str | None, overrides: tuple[str, ...], **options) -> None:
    """Compile SPEC to a torch.fx GraphModule and print its blocks, evaluations and parameters."""
    from rkcompile.files import FileError, check_target, same_file

    if output and code and same_file(output, code):
        raise FileError(code, "-o and --code name the same file")
    for target in (output, code):
        if target:
            check_target(target, inputs=[spec])  # refused before any work: the input is never replaced

    from rkcompile.compiler import build as compile_spec
    from rkcompile.model import parameter_count
    from rkcompile.naming import display
    from rkcompile.summary import units

    model = compile_spec(spec, list(overrides), limits=limits_from(options))
    names = [s.name for s in cast("Spec", model.spec).stages]
    rows = [[display(u.label, names), u.integrator, u.evaluations or "-", f"{u.parameters:,}"] for u in units(model)]
    total = parameter_count(model)
    rows.append(["total", "", sum(u.evaluations for u in units(model)), f"{total:,}"])
    columns = ["unit", "integrator", "evaluations", "parameters"]
    extras = [", ".join(f"{kind} {n:,}" for kind, n in u.extras) for u in units(model)]
    if any(extras):  # learned steps, controllers, skip-init scalars, multistep coefficients: where they are
        columns.append("of which not F")
        rows = [[*row, text] for row, text in zip(rows, [*extras, ""], strict=True)]
    spec_name = cast("Spec", model.spec).name  # the compiler sets .spec; fx types module attributes as Tensor | Module
    click.echo(f"{spec_name}: {len(model.graph.nodes)} graph nodes")
    click.echo(table(rows, columns))
    if code:
        header = f"# forward() of the torch.fx GraphModule compiled by rkcompile from {spec}\nimport torch\n"
        from rkcompile.files import write_file

        write_file(code, header + model.code, inputs=[spec])
        click.echo(f"wrote {code}")
    if output:
        from rkcompile.artifact import save

        save(model, output, inputs=[spec])
        click.echo(f"wrote {output}")


@cli.command()
@click.argument("source", metavar="SPEC|MODEL.pt", type=click.Path(dir_okay=False))
@click.option("--batch", default=1, show_default=True, type=BATCH, help="Batch size of the memory figures.")
@click.option("--dtype", default="float32", show_default=True, type=click.Choice(DTYPES),
              help="Element type of weights and activations.")
@click.option("--optimizer", default="sgd-momentum", show_default=True, type=click.Choice(OPTIMIZER_NAMES),
              help="Optimizer whose state the training total counts.")
@click.option("--measure", is_flag=True, help="Also run one real forward and backward on CPU and measure.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON (one record per row) instead of a table.")
@click.option("--csv", "as_csv", is_flag=True, help="Print the report as CSV (one line per row) instead of a table.")
@click.option("--set", "overrides", multiple=True, metavar="PATH=VALUE", help="Override one field, e.g. stages.0.integrator=rk4.")
@click.option("--timeline", type=click.Path(dir_okay=False), metavar="OUT.png|svg",
              help="Also plot live bytes per graph node, forward and backward, with unit boundaries.")
@limit_options
def analyze(source: str, batch: int, dtype: str, optimizer: str, measure: bool, as_json: bool, as_csv: bool,
            overrides: tuple[str, ...], timeline: str | None, **options) -> None:
    """Print parameters, memory (per unit, and a training total) and FLOPs, with ratios to the same network as
    forward Euler at equal evaluations per stage."""
    from pathlib import Path

    import torch

    from rkcompile.analysis import analyze as run
    from rkcompile.analysis.formats import to_csv, to_json
    from rkcompile.cli_draw import load_model

    if as_json and as_csv:
        raise click.UsageError("give --json or --csv, not both")
    if timeline and Path(timeline).suffix.lower() not in (".png", ".svg"):
        raise RkcompileError(f"cannot plot the timeline to {timeline}: expected a .png or .svg file")
    limits = limits_from(options)
    model = load_model(Path(source), overrides, limits, device=None if measure else "meta")  # no weights to predict
    report = run(model, batch=batch, dtype=getattr(torch, dtype), measure=measure, optimizer=optimizer, limits=limits)
    from rkcompile.lowering_registers import lowering_note

    notes = lowering_note(model, batch)
    if as_json:
        click.echo(to_json(report, notes))
    elif as_csv:
        click.echo(to_csv(report), nl=False)
    else:
        click.echo(report.table())
        for note in notes:
            click.echo(note)
    if timeline:
        from rkcompile.analysis.timeline import timeline as memory_timeline
        from rkcompile.timeline_plot import timeline_plot

        line = memory_timeline(model, batch=batch, measure=measure)
        click.echo(f"wrote {timeline_plot(line, timeline)} (timeline peaks: inference "
                   f"{line.inference_peak:,} B, training {line.training_peak:,} B)", err=as_json or as_csv)


@cli.command()
@click.option("-o", "--output", type=click.Path(dir_okay=False), help="Write the schema to this file instead of printing it.")
def schema(output: str | None) -> None:
    """Print the JSON Schema of the spec language (for editor validation; see the specs' yaml-language-server line)."""
    from rkcompile.spec import Spec

    text = json.dumps(Spec.model_json_schema(), indent=2) + "\n"
    if output is None:
        click.echo(text, nl=False)
        return
    from rkcompile.files import write_file

    write_file(output, text)
    click.echo(f"wrote {output}")


def _register() -> None:
    """Add the commands that live in their own modules (drawing, transformations)."""
    from rkcompile.cli_draw import draw
    from rkcompile.cli_export import COMMANDS as PACKAGE_COMMANDS
    from rkcompile.cli_integrators import integrators
    from rkcompile.cli_kinds import kinds
    from rkcompile.cli_plan import plan
    from rkcompile.cli_transform import COMMANDS

    for command in (draw, integrators, kinds, plan, *COMMANDS, *PACKAGE_COMMANDS):
        cli.add_command(command)


_register()


def _terminate(signum, frame) -> None:
    """SIGTERM: unwind like an interrupt, so the file writer removes its temporary file, then exit 143."""
    click.echo("error: terminated (SIGTERM); no output file was replaced", err=True)
    raise SystemExit(128 + signal.SIGTERM)


def main() -> None:
    """Entry point of the console script."""
    signal.signal(signal.SIGTERM, _terminate)
    cli(prog_name="rkcompile")
