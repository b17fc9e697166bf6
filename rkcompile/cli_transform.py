"""The `remanifest`, `refine`, `interpolate` and `fold` commands: transform a saved model into a new file."""

from __future__ import annotations

import click

from rkcompile.errors import TransformError

__all__ = ["remanifest", "refine", "interpolate", "fold", "COMMANDS"]

_MODEL = click.argument("model", type=click.Path(dir_okay=False))
_OUTPUT = click.option("-o", "--output", required=True, type=click.Path(dir_okay=False),
                       help="Write the transformed model here (never the input file).")
_STAGE = click.option("--stage", type=int, help="Transform only this stage (0-based); default: every stage it fits.")


@click.command()
@_MODEL
@_STAGE
@click.option("--integrator", help="The new tableau, by name (see `rkcompile tableaux`).")
@click.option("--steps", type=int, help="The new number of steps (basis/shared stages) or blocks.")
@_OUTPUT
def remanifest(model: str, stage: int | None, integrator: str | None, steps: int | None, output: str) -> None:
    """Evaluate MODEL's weights with another integrator and/or number of steps, without retraining."""
    from rkcompile.transforms import remanifest as run

    _transform(model, output, lambda m: run(m, integrator=integrator, steps=steps, stage=stage))


@click.command()
@_MODEL
@_STAGE
@click.option("--factor", type=int, default=2, show_default=True, help="Multiply pieces and steps by this.")
@click.option("--pieces/--no-pieces", default=True, show_default=True, help="Split each basis piece into copies.")
@click.option("--steps/--no-steps", default=True, show_default=True, help="Multiply the number of steps.")
@_OUTPUT
def refine(model: str, stage: int | None, factor: int, pieces: bool, steps: bool, output: str) -> None:
    """Split MODEL's basis pieces and/or multiply its steps (ContinuousNet refinement)."""
    from rkcompile.transforms import refine as run

    _transform(model, output, lambda m: run(m, factor=factor, pieces=pieces, steps=steps, stage=stage))


@click.command()
@_MODEL
@_STAGE
@_OUTPUT
def interpolate(model: str, stage: int | None, output: str) -> None:
    """Insert a copy of every block of MODEL after it and halve h (multi-level ResNets)."""
    from rkcompile.transforms import interpolate as run

    _transform(model, output, lambda m: run(m, stage=stage))


@click.command()
@_MODEL
@_OUTPUT
def fold(model: str, output: str) -> None:
    """Freeze MODEL's learned step sizes and controller outputs into constants for inference."""
    from rkcompile.transforms import fold_step_sizes

    _transform(model, output, fold_step_sizes)


COMMANDS = (remanifest, refine, interpolate, fold)


def _transform(source: str, output: str, apply) -> None:
    """Load, transform, report sizes before and after, save; the input file is only ever read."""
    from rkcompile.artifact import load, save
    from rkcompile.files import check_target, same_file
    from rkcompile.transforms import graph_size, parameter_count

    if same_file(source, output):
        raise TransformError(f"{output}: is the input model; write the result to another file")
    check_target(output, inputs=[source])
    before = load(source)
    after = apply(before)
    for label, model in (("before", before), ("after", after)):
        click.echo(f"{label + ':':8}{parameter_count(model):>12,} parameters  {graph_size(model):>6,} graph nodes")
    save(after, output, inputs=[source])
    click.echo(f"wrote {output}")
