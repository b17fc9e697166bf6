"""Datasets for the training script and the experiments: generated (spirals, pendulum, MNIST-1D), shipped (digits),
local (CIFAR-10).

Nothing is ever downloaded: spirals and the pendulum are computed, MNIST-1D is regenerated from its templates by
the `mnist1d` package (Greydanus 2020) and cached, scikit-learn ships the 8x8 digits, and CIFAR-10 is read from a
directory the user already has.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset as TorchDataset
from torch.utils.data import TensorDataset

__all__ = ["DATASETS", "DataError", "Dataset", "load", "spirals", "digits", "pendulum", "cifar10", "mnist1d",
           "mnist1d_arrays", "cache_dir",
           "pendulum_state", "pendulum_field", "pendulum_period", "GRAVITY", "RHO0"]

DATASETS = ("digits", "mnist1d", "spirals", "pendulum", "cifar10")
GRAVITY = 9.81             # Queiruga et al. 2020, Sec. 3.3.1 writes g = -9.81 in rho'' = g sin(rho); we keep g > 0 and the minus
RHO0 = 3 * math.pi / 4     # the initial angle of Queiruga et al. 2020 (released from rest)


class DataError(Exception):
    """A dataset cannot be provided or does not fit the model (shown to the user as one line)."""


@dataclass
class Dataset:
    """A train/test pair with what a model needs to know: the input shape, the task and the number of classes."""

    name: str
    train: TorchDataset
    test: TorchDataset
    shape: tuple[int, ...]          # one sample: (C, H, W) for images, (C, L) for signals, (F,) for vectors
    task: str                       # "classification" or "regression"
    classes: int | None = None      # classification only
    outputs: int | None = None      # regression only: the target's size

    @property
    def is_image(self) -> bool:
        """True when samples are images (C, H, W)."""
        return len(self.shape) == 3

    @property
    def is_signal(self) -> bool:
        """True when samples are 1-d signals (C, L)."""
        return len(self.shape) == 2

    def describe(self) -> str:
        """The sample shape in words, e.g. 'images 1x8x8', 'signals of 1 channel x 40 samples' or 'vectors of 2 features'."""
        if self.is_image:
            return "images " + "x".join(map(str, self.shape))
        if self.is_signal:
            return f"signals of {self.shape[0]} channel{'s' * (self.shape[0] != 1)} x {self.shape[1]} samples"
        return f"vectors of {self.shape[0]} features"


# ---------------------------------------------------------------- spirals (Feldhausen and Vallbo)
def spirals(n: int, seed: int = 0, turns: float = 1.5, noise: float = 0.03) -> tuple[torch.Tensor, torch.Tensor]:
    """Two interleaved 2-D spiral arms (labels 0/1), n points in all, radius in (0, 1], Gaussian noise added."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % 2
    t = np.sqrt(rng.uniform(0.02, 1.0, n))                 # sqrt: points spread evenly along the arm's length
    angle = 2 * math.pi * turns * t + math.pi * labels     # the second arm is the first turned by pi
    x = np.stack([t * np.cos(angle), t * np.sin(angle)], axis=1) + noise * rng.standard_normal((n, 2))
    order = rng.permutation(n)
    return torch.tensor(x[order], dtype=torch.float32), torch.tensor(labels[order], dtype=torch.long)


def _spirals(n_train: int = 1000, n_test: int = 1000, seed: int = 0) -> Dataset:
    train = TensorDataset(*spirals(n_train, seed=seed))
    test = TensorDataset(*spirals(n_test, seed=seed + 10_000))
    return Dataset("spirals", train, test, (2,), "classification", classes=2)


# ---------------------------------------------------------------- pendulum (Queiruga et al. 2020, Sec. 3)
def pendulum_state(t, rho0: float = RHO0, g: float = GRAVITY) -> np.ndarray:
    """Exact state [rho(t), v(t)] of rho'' = -g sin(rho), rho(0) = rho0, v(0) = 0 (Queiruga et al. 2020, eq. 13), shape (..., 2).

    rho(t) = 2 arcsin(k sn(K(m) - w0 t; m)), v(t) = -2 k w0 cn(K(m) - w0 t; m), with m = k^2 = sin^2(rho0/2),
    w0 = sqrt(g) and scipy's parameter convention for ellipj/ellipk; v follows from d sn/du = cn dn and
    dn = sqrt(1 - k^2 sn^2).
    """
    from scipy.special import ellipj, ellipk

    k = math.sin(rho0 / 2)
    m, w0 = k * k, math.sqrt(g)
    sn, cn, _, _ = ellipj(ellipk(m) - w0 * np.asarray(t, dtype=np.float64), m)
    return np.stack([2 * np.arcsin(k * sn), -2 * k * w0 * cn], axis=-1)


def pendulum_field(x, g: float = GRAVITY):
    """The true vector field f([rho, v]) = [v, -g sin(rho)] (numpy arrays or torch tensors, last axis 2)."""
    lib = torch if torch.is_tensor(x) else np
    return lib.stack([x[..., 1], -g * lib.sin(x[..., 0])], -1)


def pendulum_period(rho0: float = RHO0, g: float = GRAVITY) -> float:
    """The period 4 K(m) / sqrt(g) of the pendulum released from rest at rho0."""
    from scipy.special import ellipk

    return 4 * float(ellipk(math.sin(rho0 / 2) ** 2)) / math.sqrt(g)


def pendulum(dt: float = 0.1, t_end: float = 10.0, test_fraction: float = 0.2,
             dtype: torch.dtype = torch.float32) -> Dataset:
    """One-step pairs (x_k, x_{k+1}) of the exact trajectory sampled every dt on [0, t_end]; the last part is the test."""
    states = torch.tensor(pendulum_state(np.arange(round(t_end / dt) + 1) * dt), dtype=dtype)
    x, y = states[:-1], states[1:]
    cut = int(round(len(x) * (1 - test_fraction)))
    return Dataset("pendulum", TensorDataset(x[:cut], y[:cut]), TensorDataset(x[cut:], y[cut:]), (2,),
                   "regression", outputs=2)


# ---------------------------------------------------------------- digits (scikit-learn)
def digits(seed: int = 0, test_fraction: float = 0.2) -> Dataset:
    """scikit-learn's 8x8 digits (1,797 images, 10 classes) as 1x8x8 images in [0, 1], a stratified split."""
    try:
        from sklearn.datasets import load_digits
        from sklearn.model_selection import train_test_split
    except ImportError:
        raise DataError("the digits dataset needs scikit-learn: pip install scikit-learn") from None
    data = load_digits()
    x = torch.tensor(data.data / 16.0, dtype=torch.float32).reshape(-1, 1, 8, 8)
    y = torch.tensor(data.target, dtype=torch.long)
    train_idx, test_idx = train_test_split(np.arange(len(y)), test_size=test_fraction, random_state=seed,
                                           stratify=data.target)
    train_idx, test_idx = torch.as_tensor(train_idx), torch.as_tensor(test_idx)
    return Dataset("digits", TensorDataset(x[train_idx], y[train_idx]), TensorDataset(x[test_idx], y[test_idx]),
                   (1, 8, 8), "classification", classes=10)


# ---------------------------------------------------------------- MNIST-1D (Greydanus 2020), regenerated locally
def cache_dir() -> Path:
    """Where generated datasets are cached: $XDG_CACHE_HOME/rkcompile, else ~/.cache/rkcompile (the XDG default)."""
    base = os.environ.get("XDG_CACHE_HOME") or ""
    return (Path(base) if os.path.isabs(base) else Path.home() / ".cache") / "rkcompile"


def _mnist1d_args() -> tuple[dict, str]:
    """The package's standard generation arguments (5,000 samples, 80% train, seed 42) and their cache key."""
    try:
        from importlib.metadata import version

        from mnist1d.data import get_dataset_args
    except ImportError:
        raise DataError("the mnist1d dataset needs the mnist1d package: pip install mnist1d") from None
    args = get_dataset_args(as_dict=True)
    recipe = {k: v for k, v in args.items() if k != "url"}   # the URL is only used for downloading, which we never do
    key = json.dumps({"mnist1d": version("mnist1d"), "args": recipe}, sort_keys=True)
    return args, hashlib.sha256(key.encode()).hexdigest()[:16]


def mnist1d_arrays(cache: bool = True) -> dict[str, np.ndarray]:
    """MNIST-1D's standard split as arrays {x (4000x40), y, x_test (1000x40), y_test}, from the templates.

    `mnist1d.data.make_dataset` regenerates the split deterministically (its own seed 42; never the download in
    `get_dataset`); numpy's and Python's global random states are restored afterwards. The arrays are cached
    as cache_dir()/mnist1d-<hash>.npz, the hash covering the package version and the generation arguments.
    """
    args, key = _mnist1d_args()
    path = cache_dir() / f"mnist1d-{key}.npz"
    if cache and path.is_file():
        import zipfile

        from rkcompile.files import FileError, read_bytes

        try:
            with np.load(io.BytesIO(read_bytes(path, limit=64 << 20, what="cache file")), allow_pickle=False) as z:
                arrays = {name: z[name] for name in ("x", "y", "x_test", "y_test")}
            if arrays["x"].shape == (4000, 40) and arrays["x_test"].shape == (1000, 40):
                return arrays
        except (OSError, ValueError, KeyError, zipfile.BadZipFile, FileError):  # a damaged cache is regenerated
            pass
    import random

    from mnist1d.data import make_dataset
    from mnist1d.utils import ObjectView

    numpy_state, python_state = np.random.get_state(), random.getstate()
    try:
        data = make_dataset(ObjectView(dict(args)))
    finally:
        np.random.set_state(numpy_state)
        random.setstate(python_state)
    arrays = {"x": data["x"].astype(np.float32), "y": data["y"].astype(np.int64),
              "x_test": data["x_test"].astype(np.float32), "y_test": data["y_test"].astype(np.int64)}
    if cache:
        from rkcompile.files import write_file

        buffer = io.BytesIO()
        np.savez(buffer, **arrays)
        path.parent.mkdir(parents=True, exist_ok=True)
        write_file(path, buffer.getvalue())
    return arrays


def mnist1d(cache: bool = True) -> Dataset:
    """MNIST-1D (Greydanus 2020): 40-sample 1-d signals of 10 digit templates, the standard 4,000 / 1,000 split.

    Samples are signals of shape (1, 40) for a spec with `input: {channels: 1, length: 40}`.
    """
    a = mnist1d_arrays(cache)
    x, x_test = (torch.from_numpy(a[k]).unsqueeze(1) for k in ("x", "x_test"))
    y, y_test = torch.from_numpy(a["y"]), torch.from_numpy(a["y_test"])
    return Dataset("mnist1d", TensorDataset(x, y), TensorDataset(x_test, y_test), (1, 40), "classification",
                   classes=10)


# ---------------------------------------------------------------- CIFAR-10 (local files only)
def cifar10(root: str | Path | None) -> Dataset:
    """CIFAR-10 from `root` (torchvision's layout: root/cifar-10-batches-py); never downloads."""
    if root is None:
        raise DataError("cifar10 needs --data-root DIR holding cifar-10-batches-py/ (this script never downloads)")
    folder = Path(root) / "cifar-10-batches-py"
    if not folder.is_dir():
        raise DataError(f"CIFAR-10 not found: {folder} does not exist (get it from "
                        "https://www.cs.toronto.edu/~kriz/cifar.html and unpack it under --data-root)")
    try:
        from torchvision import datasets, transforms
    except ImportError:
        raise DataError("cifar10 needs torchvision") from None
    norm = transforms.Normalize((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616))
    augment = transforms.Compose([transforms.RandomCrop(32, padding=4), transforms.RandomHorizontalFlip(),
                                  transforms.ToTensor(), norm])
    plain = transforms.Compose([transforms.ToTensor(), norm])
    try:
        train = datasets.CIFAR10(str(root), train=True, download=False, transform=augment)
        test = datasets.CIFAR10(str(root), train=False, download=False, transform=plain)
    except (RuntimeError, OSError, ValueError) as e:
        raise DataError(f"CIFAR-10 under {root} cannot be read: {' '.join(str(e).split())}") from None
    return Dataset("cifar10", train, test, (3, 32, 32), "classification", classes=10)


def load(name: str, data_root: str | Path | None = None, seed: int = 0, dt: float = 0.1) -> Dataset:
    """A dataset by name (one of DATASETS); DataError for an unknown name or missing files."""
    if name == "digits":
        return digits(seed)
    if name == "mnist1d":
        return mnist1d()
    if name == "spirals":
        return _spirals(seed=seed)
    if name == "pendulum":
        return pendulum(dt)
    if name == "cifar10":
        return cifar10(data_root)
    raise DataError(f"unknown dataset '{name}'; expected one of {', '.join(DATASETS)}")
