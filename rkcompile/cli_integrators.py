"""`rkcompile integrators`: every integrator of every family, with its order, history and stability facts."""

from __future__ import annotations

from typing import Any

import click

__all__ = ["integrators", "integrator_rows"]

HEADER = ["name", "family", "order", "evaluations/step", "history", "stability", "source"]


def integrator_rows() -> list[list[object]]:
    """One row per built-in integrator: RK tableaux, then the multistep and momentum schemes."""
    from rkcompile.multistep import get_multistep, list_multistep
    from rkcompile.tableaux import get_tableau, list_tableaux

    rows: list[list[object]] = []
    for n in list_tableaux():
        t = get_tableau(n)
        rows.append([n, "rk", t.order, t.pruned().stages, 1, "one-step (zero-stable)", t.source.split(",")[0]])
    for n in list_multistep():
        m = get_multistep(n)
        start = "from rest" if m.startup == "rest" else f"start-up {m.startup}"
        rows.append([n, "multistep", m.order, 1, f"{m.steps} ({start})", m.stability(), m.source.split(",")[0]])
    return rows


@click.command()
@click.argument("name", required=False)
def integrators(name: str | None) -> None:
    """List every integrator (RK tableaux and multistep schemes), or show one by NAME."""
    from rkcompile.cli import table
    from rkcompile.integrators import resolve_integrator

    if name:
        method: Any = resolve_integrator(name)[1]  # a Tableau or a LinearMultistep: both describe themselves
        click.echo(method.describe())
        return
    click.echo(table(integrator_rows(), HEADER))
    click.echo("(history: steps of y or F the method reads; multistep start-up evaluations count in a stage's budget)")
