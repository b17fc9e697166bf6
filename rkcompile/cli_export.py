"""`rkcompile specs` and `rkcompile export`: argument parsing for the shipped-spec catalog and the exporters."""

from __future__ import annotations

import click

__all__ = ["COMMANDS", "export", "specs"]


@click.command()
def specs() -> None:
    """List the shipped specs (build them by name): source paper and parameters (counted on the meta device)."""
    from rkcompile.catalog import list_specs
    from rkcompile.cli import table

    rows = [[e.name, e.source, f"{e.parameters:,}"] for e in list_specs()]
    click.echo(table(rows, ["name", "source", "parameters"]))


@click.command()
@click.argument("model_path", metavar="MODEL.pt", type=click.Path(dir_okay=False))
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False),
              help="File to write: .pt2 (torch.export) or .onnx (ONNX, needs rkcompile[export]).")
def export(model_path: str, output: str) -> None:
    """Export a saved MODEL.pt for inference (eval mode, dynamic batch; learned step sizes folded first)."""
    from rkcompile.artifact import load
    from rkcompile.export import check_destination, prepare
    from rkcompile.export import export as run
    from rkcompile.files import check_target

    check_target(output, [model_path])  # the input model is never replaced
    kind = check_destination(output)
    model = load(model_path)
    folded = prepare(model)[1]
    run(model, output, inputs=(model_path,))
    note = " (learned step sizes folded into constants)" if folded else ""
    click.echo(f"wrote {output} ({kind}){note}")


COMMANDS = (specs, export)
