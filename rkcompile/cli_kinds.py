"""`rkcompile kinds`: every registered kind of every registry, and where it comes from (built in, module, plugin)."""

from __future__ import annotations

import json

import click

__all__ = ["kinds"]


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print a JSON object: registry -> [{name, from}].")
def kinds(as_json: bool) -> None:
    """List what is registered in every registry and from where (built in, a module path, a plugin distribution)."""
    from rkcompile.cli import table
    from rkcompile.plugins import registered

    found = registered()
    if as_json:
        click.echo(json.dumps({what: [{"name": n, "from": o} for n, o in entries] for what, entries in found.items()},
                              indent=2))
        return
    click.echo(table([[what, n, o] for what, entries in found.items() for n, o in entries], ["registry", "name", "from"]))
    click.echo("(plugins register through the entry-point group 'rkcompile.plugins'; see docs/spec.md, Plugins)")
