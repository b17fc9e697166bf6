"""MNIST-1D (Greydanus 2020) for the stacking and manifestation experiments: splits, networks, a lean training loop.

Splits: MNIST-1D's standard 4,000 / 1,000 split; the last 500 training samples are a validation split (every
hyperparameter and every "trains" decision is taken on it), the first 3,500 a pool from which each seed draws its
own training subset; the 1,000 test samples are only evaluated, never selected on.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable
from fractions import Fraction

import torch
from common import ROOT, datasets, evaluate, train_epochs

import rkcompile

SPECS = ROOT / "specs" / "mnist1d"
VALIDATION = 500
# name -> (spec stem under specs/mnist1d, step h, evaluations E); None: the plain (non-residual) baseline at E = 8.
# The specs hold E = 28 (HO-ResNet-58's budget, where Verner 8(9) fits too); the experiments use E = 8, and E = 14
# for Verner 8(9) and its controls, to fit a 2-core CPU.
VARIANTS: dict[str, tuple[str, Fraction, int] | None] = {
    "euler": ("euler", Fraction(1), 8), "midpoint": ("midpoint", Fraction(1), 8), "rk4": ("rk4", Fraction(1), 8),
    "ab3": ("ab3", Fraction(1), 8), "lm-resnet": ("lm-resnet", Fraction(1), 8),
    "momentum": ("momentum", Fraction(1), 8),
    "euler h=1/4": ("euler", Fraction(1, 4), 8), "midpoint h=1/2": ("midpoint", Fraction(1, 2), 8), "plain": None,
    "verner89 E=14": ("verner89", Fraction(1), 14), "euler E=14": ("euler", Fraction(1), 14),
    "euler h=1/14 E=14": ("euler", Fraction(1, 14), 14),
}
PLAIN_EVALUATIONS = 8


def splits(train_size: int, seed: int) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """{train, val, test} as (x, y): `train_size` samples of the 3,500-sample pool drawn with `seed`."""
    ds = datasets().mnist1d()
    x, y = ds.train.tensors
    pool = len(x) - VALIDATION
    if not 0 < train_size <= pool:
        raise ValueError(f"train_size must be in 1 ... {pool}, got {train_size}")
    pick = torch.randperm(pool, generator=torch.Generator().manual_seed(10_000 + seed))[:train_size]
    return {"train": (x[pick], y[pick]), "val": (x[pool:], y[pool:]), "test": ds.test.tensors}


def network(variant: str, seed: int) -> torch.nn.Module:
    """The variant's network (specs/mnist1d/mnist1d-<scheme>.yaml with its h), weights drawn with `seed`."""
    if VARIANTS[variant] is None:
        return plain(seed)
    scheme, h, evaluations = VARIANTS[variant]
    return rkcompile.build(SPECS / f"mnist1d-{scheme}.yaml", {"seed": seed, "stages.0.step": {"h": str(h)},
                                                             "stages.0.evaluations": evaluations})


def integration_time(variant: str) -> float | None:
    """T = blocks x h of the variant's stage (None for the plain network)."""
    if VARIANTS[variant] is None:
        return None
    model = network(variant, 0)
    stage = model.spec.stages[0]
    return float(stage.blocks * VARIANTS[variant][1])


def plain(seed: int) -> torch.nn.Module:
    """The plain baseline: the euler spec's layers at E = 8 without the skips (y <- ReLU(F(y)), He et al.'s plain net).

    The spec language has no non-residual stage, so it is written out here; its parameter count equals the specs'.
    """
    euler = rkcompile.build(SPECS / "mnist1d-euler.yaml")
    width, evaluations = euler.spec.stages[0].channels, PLAIN_EVALUATIONS
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        layers: list[torch.nn.Module] = [torch.nn.Conv1d(1, width, 3, padding=1, bias=False),
                                         torch.nn.BatchNorm1d(width)]
        for _ in range(evaluations):
            layers += [torch.nn.Conv1d(width, width, 3, padding=1, bias=False), torch.nn.BatchNorm1d(width),
                       torch.nn.ReLU(), torch.nn.Conv1d(width, width, 3, padding=1, bias=False),
                       torch.nn.BatchNorm1d(width), torch.nn.ReLU()]
        layers += [torch.nn.AdaptiveAvgPool1d(1), torch.nn.Flatten(), torch.nn.Linear(width, 10)]
        return torch.nn.Sequential(*layers)


def fit(model: torch.nn.Module, train: tuple, epochs: int, batch: int, optimizer: Callable, seed: int,
        schedule: Callable | None = None) -> dict:
    """`common.train_epochs` without per-epoch evaluation, timed. Returns {diverged, train_loss per epoch, seconds,
    cpu_seconds}."""
    start, cpu = time.perf_counter(), time.process_time()
    losses, diverged = train_epochs(model, train, epochs, batch, optimizer, seed, schedule)
    return {"diverged": diverged, "train_loss": losses, "seconds": time.perf_counter() - start,
            "cpu_seconds": time.process_time() - cpu}


def scores(model: torch.nn.Module, data: dict) -> dict:
    """Validation and test loss/accuracy (a non-finite loss is stored as None and counts as diverged)."""
    out: dict = {}
    for split in ("val", "test"):
        loss, acc = evaluate(model, *data[split])
        out[f"{split}_loss"] = loss if math.isfinite(loss) else None
        out[f"{split}_acc"] = acc
    return out


def adamw_onecycle(lr: float, weight_decay: float = 1e-2):
    """(optimizer, schedule) factories: AdamW and a per-step one-cycle schedule peaking at `lr`."""
    def optimizer(params):
        return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)

    def schedule(opt, steps):
        return torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps)

    return optimizer, schedule


def machine() -> dict:
    """The load average (1, 5, 15 min) and CPU count when a run starts or ends, for the results."""
    return {"loadavg": [round(v, 2) for v in os.getloadavg()], "cpus": os.cpu_count()}
