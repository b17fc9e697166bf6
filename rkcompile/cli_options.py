"""Options that several commands share: the resource limits (torch-free, so `check` stays fast)."""

from __future__ import annotations

import click

from rkcompile.limits import DEFAULT, Limits

__all__ = ["limit_options", "limits_from", "BATCH", "DTYPES", "OPTIMIZER_NAMES"]

#: --batch: a positive integer small enough for int64 tensor sizes (the analysis' MAX_BATCH)
BATCH = click.IntRange(min=1, max=2**31 - 1)
#: --dtype: the floating-point element types the analysis costs (torch's names)
DTYPES = ("float32", "float64", "bfloat16", "float16")
#: --optimizer: the optimizers whose state `analyze` counts (rkcompile.analysis.optimizer.OPTIMIZERS, without torch)
OPTIMIZER_NAMES = ("sgd", "sgd-momentum", "adam", "adamw")


def limit_options(command):
    """Add --max-params, --max-nodes, --max-activation and --max-measure to a command (as `limits` objects)."""
    options = [
        click.option("--max-params", type=click.IntRange(min=1), metavar="N",
                     help=f"Refuse networks with more parameters (default {DEFAULT.max_params:,})."),
        click.option("--max-nodes", type=click.IntRange(min=1), metavar="N",
                     help=f"Refuse graphs with more nodes or layer modules (default {DEFAULT.max_nodes:,})."),
        click.option("--max-activation", type=click.IntRange(min=1), metavar="BYTES",
                     help=f"Refuse a single batch-1 activation larger than this (default {DEFAULT.max_activation_bytes:,})."),
        click.option("--max-measure", type=click.IntRange(min=1), metavar="BYTES",
                     help=f"Refuse --measure runs predicted to need more (default {DEFAULT.max_measure_bytes:,})."),
    ]
    for option in reversed(options):
        command = option(command)
    return command


def limits_from(options: dict) -> Limits:
    """The Limits the --max-* options ask for (popped from `options`), defaults elsewhere."""
    return DEFAULT.raised(max_params=options.pop("max_params", None), max_nodes=options.pop("max_nodes", None),
                          max_activation_bytes=options.pop("max_activation", None),
                          max_measure_bytes=options.pop("max_measure", None))
