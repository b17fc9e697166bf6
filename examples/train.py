"""Train a network compiled from an rkcompile spec with a plain PyTorch loop.

    python examples/train.py --spec specs/spirals-rk4.yaml --dataset spirals --epochs 20 --optimizer adam --lr 0.01
    python examples/train.py --spec my-digits.yaml --dataset digits --set stages.0.integrator=rk4 --out runs/rk4
    python examples/train.py --spec specs/continuousnet-2-2-2.yaml --dataset cifar10 --data-root ~/data \\
        --epochs 160 --lr-schedule cosine --schedule 60:refine --schedule 110:refine --out runs/cnet
    python examples/train.py --resume runs/cnet/checkpoint.pt --dataset cifar10 --data-root ~/data \\
        --epochs 160 --lr-schedule cosine --schedule 60:refine --schedule 110:refine --out runs/cnet
    torchrun --nproc_per_node 2 examples/train.py --spec ... --dataset digits     # DistributedDataParallel (gloo on CPU)

With --out DIR it writes DIR/log.csv (one row per epoch), DIR/log.json (arguments, history, transformation events)
DIR/model.pt, an rkcompile artifact that `rkcompile.load` reads back, and DIR/checkpoint.pt, the same artifact
plus the optimizer, schedule and random-generator state that --resume continues from (the same arguments and
--epochs continue the same run). Progress bars (tqdm: batches, loss, samples/s, ETA) appear on a terminal only. Bad input is one line on stderr and a
non-zero exit status, checked before any training: exit 2 for usage errors, 1 for everything else.
"""

from __future__ import annotations

import argparse
import csv
import functools
import json
import math
import os
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, DistributedSampler, Subset

import rkcompile
from rkcompile.cautions import one_line_warnings
from rkcompile.training import Schedule, cosine

sys.path.insert(0, str(Path(__file__).resolve().parent))
import checkpoint  # noqa: E402  (examples/checkpoint.py, beside this file)
import datasets as data  # noqa: E402  (examples/datasets.py, beside this file)

EVENTS = ("refine", "interpolate", "remanifest", "fold")


class UserError(Exception):
    """A problem with the user's input, reported as one line."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line instead of usage + message
        self.exit(2, f"error: {message} (see --help)\n")


def parse_args(argv=None) -> argparse.Namespace:
    """The command line (see the module docstring)."""
    p = _Parser(description="Train an rkcompile spec with a plain PyTorch loop.")
    p.add_argument("--spec", help="The YAML spec to compile (a path, or a shipped spec's name).")
    p.add_argument("--set", action="append", default=[], metavar="PATH=VALUE", help="Override one spec field.")
    p.add_argument("--dataset", required=True, choices=data.DATASETS, help="The dataset to train on.")
    p.add_argument("--data-root", help="Directory holding cifar-10-batches-py/ (CIFAR-10 only; never downloaded).")
    p.add_argument("--dt", type=float, default=0.1, help="Pendulum only: the sampling step of the data.")
    p.add_argument("--epochs", type=int, default=10, help="Number of epochs.")
    p.add_argument("--batch-size", type=int, default=64, help="Batch size per process.")
    p.add_argument("--lr", type=float, default=0.1, help="Learning rate.")
    p.add_argument("--optimizer", choices=("sgd", "adam", "adamw"), default="sgd", help="The optimizer.")
    p.add_argument("--momentum", type=float, default=0.9, help="SGD momentum.")
    p.add_argument("--weight-decay", type=float, default=0.0, help="Weight decay.")
    p.add_argument("--lr-schedule", choices=("constant", "cosine"), default="constant",
                   help="Learning rate within a cycle (a cycle restarts at each --schedule event).")
    p.add_argument("--schedule", action="append", default=[], metavar="EPOCH:EVENT[:KEY=VALUE...]",
                   help="Transform the model after EPOCH epochs (between the lines 'epoch EPOCH/N' and "
                        "'epoch EPOCH+1/N'): refine, interpolate, remanifest, fold.")
    p.add_argument("--seed", type=int, help="Seed of the data order and, when given, of the model (default: spec's).")
    p.add_argument("--out", help="Write log.csv, log.json and model.pt here.")
    p.add_argument("--compile", nargs="?", const="full", choices=("full", "regional"),
                   help="torch.compile the model: full (the default) or regional (each distinct block once).")
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:1, ... (default: cuda when available).")
    p.add_argument("--threads", type=int, help="torch.set_num_threads for this process.")
    p.add_argument("--resume", metavar="CHECKPOINT", help="Continue from DIR/checkpoint.pt of an earlier --out (its spec wins over --spec).")
    p.add_argument("--no-progress", action="store_true", help="No progress bars (epoch summaries only).")
    p.add_argument("--quiet", action="store_true", help="No progress bars and no epoch summaries.")
    p.add_argument("--debug", action="store_true", help="Show tracebacks.")
    args = p.parse_args(argv)
    for name in ("epochs", "batch_size"):
        if getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be at least 1, found {getattr(args, name)}")
    if not args.lr > 0 or not math.isfinite(args.lr):
        p.error(f"--lr must be a positive number, found {args.lr}")
    if args.spec is None and args.resume is None:
        p.error("give --spec (or --resume CHECKPOINT)")
    return args


def parse_schedule(items: list[str], epochs: int) -> dict[int, list]:
    """Turn ['60:refine', '3:remanifest:integrator=rk4'] into Schedule's {epoch: [event, ...]}."""
    import yaml

    at: dict[int, list] = {}
    for item in items:
        epoch, _, rest = item.partition(":")
        name, *options = rest.split(":") if rest else [""]
        if not epoch.strip().isdigit() or not name:
            raise UserError(f"--schedule: expected EPOCH:EVENT (e.g. 60:refine), found '{item}'")
        if name not in EVENTS:
            raise UserError(f"--schedule: unknown event '{name}'; expected one of {', '.join(EVENTS)}")
        if not 0 < int(epoch) < epochs:
            raise UserError(f"--schedule: epoch {epoch} of '{item}' is not inside the run (1 ... {epochs - 1})")
        kwargs = {}
        for option in options:
            key, sep, value = option.partition("=")
            if not sep:
                raise UserError(f"--schedule: expected KEY=VALUE after the event, found '{option}' in '{item}'")
            kwargs[key] = yaml.safe_load(value)
        at.setdefault(int(epoch), []).append((name, kwargs) if kwargs else name)
    return at


# ---------------------------------------------------------------- model and data
def build_model(args) -> torch.fx.GraphModule:
    """Compile the spec with the --set overrides (and --seed, when given, as the spec's seed)."""
    from rkcompile.catalog import resolve

    overrides = list(args.set) + ([f"seed={args.seed}"] if args.seed is not None else [])
    spec = resolve(args.spec)  # a shipped spec's name → its file (an unknown name: SpecError naming the nearest)
    if not Path(spec).is_file():
        raise UserError(f"--spec: no such file: {args.spec}")
    return rkcompile.build(spec, overrides)


def input_adapter(spec, ds: data.Dataset):
    """How to feed the dataset's samples to the spec's input (identity or flatten); UserError when they do not fit."""
    i = spec.input
    if i.is_image:
        want = (i.channels, i.height, i.width)
        if ds.shape == want:
            return None
        raise UserError(f"spec '{spec.name}' takes images {'x'.join(map(str, want))} but dataset '{ds.name}' "
                        f"gives {ds.describe()}")
    if i.state == "signal":
        want = (i.channels, i.length)
        if ds.shape == want:
            return None
        raise UserError(f"spec '{spec.name}' takes signals of {i.channels} channel{'s' * (i.channels != 1)} x "
                        f"{i.length} samples but dataset '{ds.name}' gives {ds.describe()}")
    if ds.shape == (i.features,):
        return None
    if ds.is_image and math.prod(ds.shape) == i.features:
        return torch.nn.Flatten()
    raise UserError(f"spec '{spec.name}' takes vectors of {i.features} features but dataset '{ds.name}' "
                    f"gives {ds.describe()}")


def check_output(model, adapter, ds: data.Dataset) -> None:
    """Check the spec's head against the task, then run two samples through the model and check the output's shape."""
    spec = model.spec
    if ds.task == "classification" and spec.output is None:
        raise UserError(f"spec '{spec.name}' has no classification head but dataset '{ds.name}' has {ds.classes} "
                        f"classes (add `output: {{classes: {ds.classes}}}`)")
    if ds.task == "classification" and spec.output.kind == "regression":
        raise UserError(f"spec '{spec.name}' ends in a regression head ({spec.output.outputs} outputs) but dataset "
                        f"'{ds.name}' has {ds.classes} classes (use `output: {{classes: {ds.classes}}}`)")
    if ds.task == "regression" and spec.output is not None and spec.output.kind != "regression":
        raise UserError(f"spec '{spec.name}' ends in a classification head ({spec.output.classes} classes) but "
                        f"dataset '{ds.name}' is a regression of {ds.outputs} values (remove `output`)")
    x = torch.stack([ds.train[i][0] for i in range(2)])
    x = adapter(x) if adapter is not None else x
    model.eval()
    with torch.no_grad():
        out = model(x)
    want = ds.classes if ds.task == "classification" else ds.outputs
    if tuple(out.shape) != (2, want):
        what = f"{ds.classes} classes" if ds.task == "classification" else f"{ds.outputs} values per sample"
        raise UserError(f"spec '{spec.name}' outputs {tuple(out.shape[1:])} per sample but dataset '{ds.name}' "
                        f"needs {what}")


# ---------------------------------------------------------------- distributed
def setup_distributed(args) -> tuple[int, int, torch.device]:
    """Start the process group when launched by torchrun (WORLD_SIZE > 1); return (rank, world size, device)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    if args.device == "auto":
        device = torch.device(f"cuda:{local}" if torch.cuda.is_available() else "cpu")
    else:
        device = torch.device(args.device)
    if world > 1:
        import torch.distributed as dist

        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
        return dist.get_rank(), world, device
    return 0, 1, device


def all_sum(values: list[float], world: int, device) -> list[float]:
    """Sum a list of numbers over all processes."""
    if world == 1:
        return values
    import torch.distributed as dist

    t = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return t.tolist()


def wrap(model, args, world: int, device):
    """The module the loop calls: the model, in DDP when distributed, through (regional) torch.compile when asked."""
    run = rkcompile.compile(model, mode="regional") if args.compile == "regional" else model
    if world > 1:
        from torch.nn.parallel import DistributedDataParallel

        run = DistributedDataParallel(run, device_ids=[device.index] if device.type == "cuda" else None)
    if args.compile == "full":
        run = torch.compile(run)
    return run


# ---------------------------------------------------------------- the loop
def progress(iterable, total: int, desc: str, enabled: bool):
    """A progress bar on a terminal (tqdm: batches, ETA; run_epoch adds loss and samples/s), else nothing."""
    if not enabled or not sys.stderr.isatty():
        return iterable
    try:
        from tqdm import tqdm
    except ImportError:
        return _counter(iterable, total, desc)
    return tqdm(iterable, total=total, desc=desc, unit="batch", leave=False, dynamic_ncols=True)


def _counter(iterable, total: int, desc: str):
    start = time.perf_counter()
    for i, item in enumerate(iterable, 1):
        yield item
        rate = i / max(time.perf_counter() - start, 1e-9)
        print(f"\r{desc} {i}/{total} ({rate:.1f} it/s)", end="", file=sys.stderr, flush=True)
    print("\r" + " " * (len(desc) + 40) + "\r", end="", file=sys.stderr, flush=True)


def run_epoch(run, loader, adapter, task, optimizer, device, world, bar) -> tuple[float, float]:
    """One pass over `loader` (training when `optimizer` is given); return (mean loss, accuracy or RMSE)."""
    total_loss = score = count = 0.0
    start = time.perf_counter()
    batches = bar(loader)
    for x, y in batches:
        x, y = x.to(device), y.to(device)
        x = adapter(x) if adapter is not None else x
        with torch.set_grad_enabled(optimizer is not None):
            out = run(x)
            loss = F.cross_entropy(out, y) if task == "classification" else F.mse_loss(out, y)
        if optimizer is not None:
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        n = len(y)
        total_loss += loss.item() * n
        if task == "classification":
            score += (out.argmax(1) == y).sum().item()
        else:
            score += F.mse_loss(out, y, reduction="sum").item() / y[0].numel()
        count += n
        if hasattr(batches, "set_postfix"):  # a tqdm bar: the running loss and the throughput beside its ETA
            batches.set_postfix(loss=f"{total_loss / count:.4g}",
                                samples_s=f"{count / max(time.perf_counter() - start, 1e-9):.0f}", refresh=False)
    total_loss, score, count = all_sum([total_loss, score, count], world, device)
    if not math.isfinite(total_loss):  # checked on the sums, so every process stops together
        raise UserError(f"training diverged (mean loss {total_loss / count}); try a smaller --lr")
    mean = score / count
    return total_loss / count, (mean if task == "classification" else math.sqrt(mean))


def make_optimizer(args):
    """A factory model -> optimizer (the Schedule rebuilds the optimizer after each transformation)."""
    def make(model):
        if args.optimizer == "sgd":
            return torch.optim.SGD(model.parameters(), lr=args.lr, momentum=args.momentum,
                                   weight_decay=args.weight_decay)
        cls = torch.optim.Adam if args.optimizer == "adam" else torch.optim.AdamW
        return cls(model.parameters(), lr=args.lr, weight_decay=args.weight_decay)

    return make


def train(args) -> dict:
    """Build, check and train; return the summary written to log.json."""
    if args.threads:
        torch.set_num_threads(args.threads)
    rank, world, device = setup_distributed(args)
    ds = data.load(args.dataset, args.data_root, seed=0, dt=args.dt)
    model, resumed = checkpoint.load(args.resume) if args.resume else (build_model(args), None)
    first = resumed["epoch"] if resumed else 0
    if first >= args.epochs:
        raise UserError(f"--resume: {args.resume} has already run {first} epochs; give --epochs above {first}")
    adapter = input_adapter(model.spec, ds)
    check_output(model, adapter, ds)
    span = float(sum(stage.h * stage.blocks for stage in model.spec.stages))
    if ds.name == "pendulum" and rank == 0 and not math.isclose(span, args.dt):
        print(f"warning: the spec integrates over {span:g} but the pendulum data are {args.dt:g} apart (--dt)",
              file=sys.stderr)
    at = parse_schedule(args.schedule, args.epochs)
    _dry_run(model, {e: events for e, events in at.items() if e >= first})  # earlier events are in the checkpoint
    seed = args.seed if args.seed is not None else (model.spec.seed or 0)
    torch.manual_seed(seed)
    model.to(device)

    if world > 1:
        sampler = DistributedSampler(ds.train, num_replicas=world, rank=rank, shuffle=True, seed=seed)
        test = Subset(ds.test, range(rank, len(ds.test), world))
    else:
        sampler, test = None, ds.test
    train_loader = DataLoader(ds.train, batch_size=args.batch_size, shuffle=sampler is None, sampler=sampler,
                              generator=torch.Generator().manual_seed(seed))
    test_loader = DataLoader(test, batch_size=max(args.batch_size, 256))
    scheduler = cosine(0.0) if args.lr_schedule == "cosine" else None
    schedule = Schedule(model, make_optimizer(args), at=at, epochs=args.epochs, lr_scheduler=scheduler)
    if resumed:
        schedule.load_state_dict(resumed["schedule"])
        torch.set_rng_state(resumed["rng"]["torch"])
        train_loader.generator.set_state(resumed["rng"]["data"])
    run = wrap(model, args, world, device)

    out = Path(args.out) if args.out and rank == 0 else None
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
    metric = "acc" if ds.task == "classification" else "rmse"
    summary = {"spec": model.spec.name, "dataset": ds.name, "task": ds.task, "world_size": world,
               "device": str(device), "arguments": vars(args), "history": resumed["history"] if resumed else [],
               "events": [{"epoch": e, "event": name} for e, name in schedule.history]}
    show = rank == 0 and not (args.no_progress or args.quiet)
    start = time.perf_counter()
    for epoch in range(first, args.epochs):
        current, optimizer = schedule.begin_epoch(epoch)
        if current is not model:
            model = current.to(device)
            run = wrap(model, args, world, device)
            if rank == 0:
                # 1-based like the epoch lines: the event at `epoch` comes after `epoch` finished epochs
                print(f"after epoch {epoch}/{args.epochs}: {', '.join(e for ep, e in schedule.history if ep == epoch)} -> "
                      f"{_parameters(model):,} parameters", file=sys.stderr)
        if sampler is not None:
            sampler.set_epoch(epoch)
        tic = time.perf_counter()
        lr = optimizer.param_groups[0]["lr"]
        run.train()
        bar = functools.partial(progress, total=len(train_loader), desc=f"epoch {epoch + 1}/{args.epochs}", enabled=show)
        train_loss, train_score = run_epoch(run, train_loader, adapter, ds.task, optimizer, device, world, bar)
        schedule.end_epoch()
        run.eval()
        test_loss, test_score = run_epoch(run, test_loader, adapter, ds.task, None, device, world,
                                          lambda it: it)
        row = {"epoch": epoch, "lr": lr, "train_loss": train_loss, f"train_{metric}": train_score,
               "test_loss": test_loss, f"test_{metric}": test_score, "seconds": time.perf_counter() - tic,
               "parameters": _parameters(model)}
        summary["history"].append(row)
        summary["events"] = [{"epoch": e, "event": name} for e, name in schedule.history]
        if rank == 0 and not args.quiet:
            _report(row, args.epochs, metric)
        if out is not None:
            _write_logs(out, summary)
            rkcompile.save(model, out / "model.pt")
            checkpoint.save(out / "checkpoint.pt", model, {
                "epoch": epoch + 1, "schedule": schedule.state_dict(), "history": summary["history"],
                "rng": {"torch": torch.get_rng_state(), "data": train_loader.generator.get_state()}})
    summary["seconds"] = time.perf_counter() - start
    summary["final"] = summary["history"][-1]
    if out is not None:
        _write_logs(out, summary)
    return summary


def _dry_run(model, at: dict[int, list]) -> None:
    """Apply the scheduled transformations to a copy now, so that one that does not fit fails before training."""
    if not at:
        return
    from rkcompile.transforms import transform

    probe = model
    for epoch in sorted(at):
        for event in at[epoch]:
            name, kwargs = event if isinstance(event, tuple) else (event, {})
            try:
                probe, _ = transform(probe, name, **kwargs)
            except rkcompile.RkcompileError as e:
                raise UserError(f"--schedule: epoch {epoch}: {e}") from None


def _parameters(model) -> int:
    return sum(p.numel() for p in model.parameters())


def _report(row: dict, epochs: int, metric: str) -> None:
    def fmt(v):
        return f"{100 * v:.2f}%" if metric == "acc" else f"{v:.3g}"

    print(f"epoch {row['epoch'] + 1}/{epochs}  train loss {row['train_loss']:.4g} {metric} "
          f"{fmt(row[f'train_{metric}'])}  test loss {row['test_loss']:.4g} {metric} {fmt(row[f'test_{metric}'])}  "
          f"lr {row['lr']:.3g}  {row['seconds']:.1f}s", flush=True)


def _write_logs(out: Path, summary: dict) -> None:
    rows = summary["history"]
    with open(out / "log.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    (out / "log.json").write_text(json.dumps(summary, indent=2) + "\n")


def main(argv=None) -> int:
    """Entry point: parse, train, and turn every expected failure into one line on stderr."""
    args = parse_args(argv)
    try:
        with one_line_warnings():  # a spec's cautions as `warning: FILE:LINE:COL: ...`, like the rkcompile CLI
            train(args)
    except (UserError, data.DataError, rkcompile.RkcompileError) as e:
        if args.debug:
            raise
        print(f"error: {' '.join(str(e).split())}", file=sys.stderr)
        return 1
    finally:
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()
    return 0


if __name__ == "__main__":
    sys.exit(main())
