"""A compiled rkcompile network in a Lightning training loop (rkcompile itself has no trainer dependency).

    pip install lightning
    python examples/lightning_module.py --spec specs/spirals-rk4.yaml --dataset spirals --epochs 20 --lr 0.01
    python examples/lightning_module.py --spec my-digits.yaml --dataset digits --set stages.0.integrator=rk4

The LightningModule wraps the `torch.fx.GraphModule` that `rkcompile.build` returns: Lightning owns the loop,
devices, progress bar, logging (CSVLogger under --out) and checkpoints (`Trainer.fit(ckpt_path=...)` resumes the
model, optimizer and LR-scheduler state; the hyperparameters hold the spec and its overrides, so
`RkModule.load_from_checkpoint(path)` rebuilds the network). Datasets come from examples/datasets.py, as for
train.py. For rkcompile's own safe artifact format use `rkcompile.save(module.model, "model.pt")`.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import lightning as L
import torch
from torch.nn import functional as F
from torch.utils.data import DataLoader

sys.path.insert(0, str(Path(__file__).parent))
import datasets as data  # noqa: E402

import rkcompile  # noqa: E402


class RkModule(L.LightningModule):
    """A compiled spec as a LightningModule: cross-entropy or MSE by task, SGD or Adam with a cosine schedule."""

    def __init__(self, spec: str, overrides: list[str] | None = None, task: str = "classification", lr: float = 0.1,
                 optimizer: str = "sgd", epochs: int = 10) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.model = rkcompile.build(spec, overrides or None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The compiled network's forward."""
        return self.model(x)

    def _loss(self, batch) -> tuple[torch.Tensor, torch.Tensor]:
        x, y = batch
        out = self(x)
        if self.hparams.task == "classification":
            return F.cross_entropy(out, y), (out.argmax(1) == y).float().mean()
        return F.mse_loss(out, y), torch.sqrt(F.mse_loss(out, y))

    def training_step(self, batch, batch_idx: int) -> torch.Tensor:
        """One optimisation step's loss (logged on the progress bar)."""
        loss, score = self._loss(batch)
        self.log_dict({"train_loss": loss, "train_score": score}, prog_bar=True, on_epoch=True, on_step=False)
        return loss

    def validation_step(self, batch, batch_idx: int) -> None:
        """Loss and accuracy (classification) or RMSE (regression) on the test split."""
        loss, score = self._loss(batch)
        self.log_dict({"test_loss": loss, "test_score": score}, prog_bar=True)

    def configure_optimizers(self):
        """SGD (momentum 0.9) or Adam, with a cosine learning-rate schedule over the epochs."""
        params = self.parameters()
        if self.hparams.optimizer == "adam":
            optimizer: torch.optim.Optimizer = torch.optim.Adam(params, lr=self.hparams.lr)
        else:
            optimizer = torch.optim.SGD(params, lr=self.hparams.lr, momentum=0.9)
        schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=self.hparams.epochs)
        return {"optimizer": optimizer, "lr_scheduler": schedule}


def main(argv: list[str] | None = None) -> int:
    """Train a spec on a dataset with lightning.Trainer; return the exit status."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--spec", required=True, help="A spec file, or a shipped spec's name.")
    p.add_argument("--dataset", default="digits", choices=["digits", "spirals", "pendulum", "cifar10"])
    p.add_argument("--data-root", help="CIFAR-10's local directory (never downloaded).")
    p.add_argument("--set", action="append", default=[], metavar="PATH=VALUE", help="Override one spec field.")
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=0.1)
    p.add_argument("--optimizer", choices=["sgd", "adam"], default="sgd")
    p.add_argument("--out", default="runs/lightning", help="Logs (CSV) and checkpoints go here.")
    p.add_argument("--resume", metavar="CKPT", help="Continue from a Lightning checkpoint of an earlier run.")
    p.add_argument("--quiet", action="store_true", help="No progress bar and no model summary.")
    args = p.parse_args(argv)
    try:
        ds = data.load(args.dataset, args.data_root)
        module = RkModule(args.spec, args.set, ds.task, args.lr, args.optimizer, args.epochs)
    except (rkcompile.RkcompileError, data.DataError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    torch.manual_seed(0)
    trainer = L.Trainer(max_epochs=args.epochs, default_root_dir=args.out, accelerator="auto", devices=1,
                        logger=L.pytorch.loggers.CSVLogger(args.out, name="logs"), enable_progress_bar=not args.quiet,
                        enable_model_summary=not args.quiet, log_every_n_steps=1)
    trainer.fit(module, DataLoader(ds.train, batch_size=args.batch_size, shuffle=True),
                DataLoader(ds.test, batch_size=256), ckpt_path=args.resume)
    return 0


if __name__ == "__main__":
    sys.exit(main())
