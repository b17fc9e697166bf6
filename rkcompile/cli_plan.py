"""`rkcompile plan`: argument parsing for the checkpoint planner (the work is in `rkcompile.planner`)."""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING, cast

import click
import yaml

if TYPE_CHECKING:
    from rkcompile.spec import Spec

__all__ = ["plan"]


@click.command()
@click.argument("spec", type=click.Path(dir_okay=False))
@click.option("--budget", required=True, metavar="SIZE", help="Training memory to fit, e.g. 2GiB, 512MiB, 1.5GB.")
@click.option("--batch", default=1, show_default=True, type=click.IntRange(min=1), help="Batch size of the training step.")
@click.option("-o", "--output", type=click.Path(dir_okay=False), help="Write the spec with the chosen checkpoint fields here.")
@click.option("--measure", is_flag=True, help="Also run one real training step on CPU and measure its peak.")
@click.option("--set", "overrides", multiple=True, metavar="PATH=VALUE", help="Override one field, e.g. stages.0.integrator=rk4.")
def plan(spec: str, budget: str, batch: int, output: str | None, measure: bool, overrides: tuple[str, ...]) -> None:
    """Choose which blocks of SPEC to recompute in backward so a training step fits --budget at --batch."""
    from rkcompile.compiler import build
    from rkcompile.planner import plan as make_plan

    model = build(spec, list(overrides))
    validated = cast("Spec", model.spec)
    chosen = make_plan(model, budget, batch=batch)
    click.echo(chosen.summary())
    fields = chosen.overrides()
    sets = " ".join(f"--set {k}={_flow(v)}" for k, v in fields.items() if v is not None)
    if sets:
        click.echo(f"  reproduce: rkcompile build {spec} {sets}")
    if measure:
        from rkcompile.analysis.measure import measure_step
        from rkcompile.analysis.report import human_bytes

        measured = measure_step(build(validated, fields), batch)["training_peak"]
        click.echo(f"  measured training peak {human_bytes(measured)} "
                   f"({measured / chosen.training_peak - 1:+.1%} of the prediction)")
    if output:
        from rkcompile.files import write_file

        data = copy.deepcopy(validated.data)
        for n, stage in enumerate(data["stages"]):
            groups = fields[f"stages.{n}.checkpoint"]
            stage.pop("checkpoint", None)
            if groups is not None:
                stage["checkpoint"] = groups
        text = f"# {spec} with checkpoint groups chosen by rkcompile plan --budget {budget} --batch {batch}\n"
        write_file(output, text + yaml.safe_dump(data, sort_keys=False, default_flow_style=None), inputs=[spec])
        click.echo(f"wrote {output}")


def _flow(value) -> str:
    return yaml.safe_dump(value, default_flow_style=True).strip().replace(" ", "")
