"""Shared helpers of the experiments: command line, datasets, a small training loop, JSON results, plots."""

from __future__ import annotations

import argparse
import importlib.util
import io
import json
import math
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F

from rkcompile.files import write_file

ROOT = Path(__file__).resolve().parents[1]


def parse_args(name: str, description: str) -> argparse.Namespace:
    """--smoke (tiny sizes, seconds), --out (default results/<name>), --threads; sets torch's thread count."""
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--smoke", action="store_true", help="Tiny sizes: checks that the experiment runs (seconds).")
    p.add_argument("--out", default=str(ROOT / "results" / name), help="Where the JSON results and PNG plots go.")
    p.add_argument("--threads", type=int, default=1,
                   help="torch threads per process (the models are tiny: one thread is fastest).")
    p.add_argument("--jobs", type=int, help="Worker processes for independent runs (default: 2, 1 with --smoke).")
    args = p.parse_args()
    args.jobs = args.jobs or (1 if args.smoke else 2)
    torch.set_num_threads(args.threads)
    Path(args.out).mkdir(parents=True, exist_ok=True)
    return args


def run_all(worker: Callable, configs: list[dict], jobs: int, cost: Callable | None = None) -> list:
    """worker(config) for every config, in `jobs` spawned processes (one torch thread each); results in input order.

    `cost(config)` orders the work longest first so that the processes finish together.
    """
    order = sorted(range(len(configs)), key=lambda i: -cost(configs[i])) if cost else list(range(len(configs)))
    if jobs <= 1:
        results = [worker(configs[i]) for i in order]
    else:
        import multiprocessing

        with multiprocessing.get_context("spawn").Pool(jobs, initializer=torch.set_num_threads, initargs=(1,)) as pool:
            results = pool.map(worker, [configs[i] for i in order], chunksize=1)
    out = [None] * len(configs)
    for i, result in zip(order, results):
        out[i] = result
    return out


def datasets():
    """examples/datasets.py as a module (the experiments use the same data as the training script)."""
    name = "rkcompile_example_datasets"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, ROOT / "examples" / "datasets.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


def tensors(dataset) -> tuple[torch.Tensor, torch.Tensor]:
    """All samples of a TensorDataset as (inputs, targets)."""
    return dataset.tensors[0], dataset.tensors[1]


@torch.no_grad()
def evaluate(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, batch: int = 1024) -> tuple[float, float]:
    """(mean cross-entropy, accuracy) of a classifier in eval mode; non-finite losses are returned as they are."""
    model.eval()
    loss = correct = 0.0
    for i in range(0, len(x), batch):
        out = model(x[i:i + batch])
        loss += F.cross_entropy(out, y[i:i + batch], reduction="sum").item()
        correct += (out.argmax(1) == y[i:i + batch]).sum().item()
    return loss / len(x), correct / len(x)


def train_epochs(model: torch.nn.Module, train: tuple, epochs: int, batch: int, optimizer: Callable, seed: int,
                 schedule: Callable | None = None, each_epoch: Callable[[], None] | None = None) -> tuple[list[float], bool]:
    """Mini-batch cross-entropy training, the loop every experiment shares; stops at the first non-finite loss.

    `optimizer(params)` builds the optimizer; `schedule(optimizer, steps)` an optional per-step LR scheduler;
    `each_epoch()` runs after every completed epoch. Returns (mean train loss per completed epoch, diverged).
    """
    x, y = train
    generator = torch.Generator().manual_seed(seed)
    opt = optimizer(model.parameters())
    sched = schedule(opt, epochs * math.ceil(len(x) / batch)) if schedule is not None else None
    losses: list[float] = []
    for _ in range(epochs):
        model.train()
        total = 0.0
        for idx in torch.randperm(len(x), generator=generator).split(batch):
            loss = F.cross_entropy(model(x[idx]), y[idx])
            if not torch.isfinite(loss):
                return losses, True
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if sched is not None:
                sched.step()
            total += loss.item() * len(idx)
        losses.append(total / len(x))
        if each_epoch is not None:
            each_epoch()
    return losses, False


def train_classifier(model: torch.nn.Module, train: tuple, test: tuple, epochs: int, batch: int,
                     optimizer: Callable, seed: int = 0, schedule: Callable | None = None) -> dict:
    """`train_epochs` with the test accuracy after every epoch; a non-finite loss is recorded as diverged.

    Returns {train_loss per epoch, test_acc per epoch, final test loss/accuracy, diverged, seconds}.
    """
    start = time.perf_counter()
    accuracies: list[float] = []
    losses, diverged = train_epochs(model, train, epochs, batch, optimizer, seed, schedule,
                                    lambda: accuracies.append(evaluate(model, *test)[1]))
    test_loss, test_acc = evaluate(model, *test)
    diverged = diverged or not math.isfinite(test_loss)
    return {"train_loss": losses, "test_acc": accuracies, "test_loss": test_loss if math.isfinite(test_loss) else None,
            "test_acc_final": test_acc, "diverged": diverged, "seconds": time.perf_counter() - start}


def parameters(model: torch.nn.Module) -> int:
    """Number of parameters."""
    return sum(p.numel() for p in model.parameters())


def write_json(path: Path, data: dict) -> None:
    """Write results as indented JSON (NaN/inf are refused: they are stored as null by the callers)."""
    write_file(path, json.dumps(data, indent=2, allow_nan=False) + "\n")


def pyplot():
    """matplotlib's pyplot with a non-interactive backend."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


class Clock:
    """Wall time since creation, for the results' `seconds` field and progress lines."""

    def __init__(self) -> None:
        self.start = time.perf_counter()

    def __call__(self) -> float:
        """Seconds elapsed."""
        return time.perf_counter() - self.start

    def log(self, message: str) -> None:
        """Print a progress line prefixed with the elapsed time."""
        print(f"[{self():6.1f}s] {message}", flush=True)


def save_figure(fig, path: Path) -> None:
    """Lay out, write (90 dpi) and close a figure."""
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format=Path(path).suffix.lstrip(".") or "png", dpi=90)
    pyplot().close(fig)
    write_file(path, buffer.getvalue())
