"""Training checkpoints for examples/train.py: an rkcompile model artifact plus the state needed to resume.

The file is the artifact dict of `rkcompile.save` ({format, version, spec, state_dict}) with one more entry,
`training`: the next epoch, the Schedule's state (optimizer, learning-rate cycle, events applied), the random
number generators and the history so far, all tensors and plain data. So `rkcompile.load(checkpoint)` reads it as
a model, and resuming reads it with `torch.load(weights_only=True)`: no pickled code is ever run.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
import yaml

import rkcompile
from rkcompile.artifact import FORMAT, VERSION


class CheckpointError(rkcompile.RkcompileError):
    """A checkpoint cannot be written or is not one examples/train.py can resume from."""


def save(path: Path, model, training: dict) -> Path:
    """Write the model artifact with its `training` state; the previous checkpoint is replaced only on success."""
    payload = {"format": FORMAT, "version": VERSION, "spec": yaml.safe_dump(model.spec.data, sort_keys=False),
               "state_dict": model.state_dict(), "training": training}
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        torch.save(payload, tmp)
        os.replace(tmp, path)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        raise CheckpointError(f"{path}: cannot write the checkpoint: {e.strerror}") from None
    return path


def load(path: str | Path) -> tuple[torch.fx.GraphModule, dict]:
    """The model (rebuilt from the saved spec, weights loaded strictly) and its training state."""
    path = Path(path)
    model = rkcompile.load(path)  # checks the file, the header, the spec and the weights (ArtifactError)
    training = torch.load(path, map_location="cpu", weights_only=True).get("training")
    if not isinstance(training, dict) or not {"epoch", "schedule", "rng", "history"} <= set(training):
        raise CheckpointError(f"{path}: a model without training state (written by rkcompile.save, not by "
                              "train.py --out): nothing to resume; train from its spec instead")
    return model, training
