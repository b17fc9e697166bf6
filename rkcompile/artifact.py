"""Saved models: one torch file holding the spec's YAML text and the state_dict, read back without unpickling code.

The file is `torch.save` of a plain dict {format, version, spec, state_dict}. Loading uses
`torch.load(weights_only=True)`, whose unpickler admits tensors and plain containers only, so a tampered
file cannot run code; the network itself is rebuilt from the spec by the compiler, never unpickled.
Not detected: bytes flipped inside tensor data of an otherwise valid file (torch stores no checksums).
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any, cast

import torch
import yaml
from torch import fx, nn

from rkcompile.compiler import build
from rkcompile.errors import ArtifactError, RkcompileError, RkcompileWarning
from rkcompile.files import FileError, open_regular, write_file
from rkcompile.limits import Limits
from rkcompile.load import parse_spec
from rkcompile.spec import Spec

#: save() checks that the spec loads back, not that it is small: the model already exists
UNLIMITED = Limits(max_params=2**62, max_nodes=2**62, max_activation_bytes=2**62, max_measure_bytes=2**62)

__all__ = ["FORMAT", "VERSION", "MAX_BYTES", "save", "load", "state_dict_mismatch"]

FORMAT = "rkcompile-model"
VERSION = 1


#: Largest artifact read: far above a 2e9-parameter float32 model (8 GB); raise with `load(..., max_bytes=)`.
MAX_BYTES = 16 * 2**30


def save(model: nn.Module, path: str | Path, *, inputs=()) -> Path:
    """Write `model` (built by rkcompile) to one file, checking first that it will load; never clobbers on failure.

    The spec text is re-validated and its meta-device network compared, name by name and shape by shape, with
    the state_dict before anything is written; `inputs` are files the write must never replace.
    """
    path = Path(path)
    spec = getattr(model, "spec", None)
    if not isinstance(spec, Spec):
        raise ArtifactError(f"{path}: cannot save: the model has no rkcompile spec (build it with rkcompile's build)")
    try:
        text = yaml.safe_dump(spec.data, sort_keys=False)
    except yaml.YAMLError as e:
        raise ArtifactError(f"{path}: cannot save: the spec is not plain YAML data ({_one_line(e)})") from None
    state = model.state_dict()
    try:
        with warnings.catch_warnings():  # the spec was warned about when it was read; this is a round-trip check
            warnings.simplefilter("ignore", RkcompileWarning)
            saved_spec = parse_spec(text, file=f"{path}[spec]", limits=UNLIMITED)
        skeleton = build(saved_spec, limits=UNLIMITED, device="meta")
    except RkcompileError as e:
        raise ArtifactError(f"{path}: cannot save: the spec would not load back: {_one_line(e)}") from None
    problem = state_dict_mismatch(skeleton, state)
    if problem:
        raise ArtifactError(f"{path}: cannot save: the weights do not fit the saved spec: {problem}")
    payload = {"format": FORMAT, "version": VERSION, "spec": text, "state_dict": state}
    try:
        write_file(path, lambda f: torch.save(payload, f), inputs=inputs)
    except FileError as e:
        raise ArtifactError(f"{path}: cannot save: {e.reason}") from None
    return path


def load(path: str | Path, map_location: object = "cpu", *, limits: Limits | None = None,
         max_bytes: int = MAX_BYTES) -> fx.GraphModule:
    """Rebuild a saved model from its spec and load its weights strictly; every failure is an ArtifactError.

    Order: the file is read (regular, bounded), its spec text validated and limited, the state_dict's names
    and shapes compared with the spec's network built on the meta device, and only then is the real network
    built and the weights loaded.
    """
    path = Path(path)
    payload = _read(path, map_location, max_bytes)
    _check_header(path, payload)
    assert isinstance(payload, dict)  # _check_header raised otherwise
    text = payload.get("spec")
    if not isinstance(text, str):
        raise ArtifactError(f"{path}: the 'spec' entry is {_describe(text)}, expected the spec's YAML text")
    try:
        spec = parse_spec(text, file=f"{path}[spec]", limits=limits)
        skeleton = build(spec, limits=limits, device="meta")
    except RkcompileError as e:
        raise ArtifactError(f"{path}: the saved spec no longer validates: {_one_line(e)}") from None
    state = payload.get("state_dict")
    problem = state_dict_mismatch(skeleton, state)
    if problem:
        raise ArtifactError(f"{path}: the state_dict does not fit the spec '{spec.name}': {problem}")
    model = build(spec, limits=limits)
    try:
        model.load_state_dict(cast(Mapping, state), strict=True)  # state_dict_mismatch checked it is one
    except (RuntimeError, TypeError, ValueError) as e:  # pragma: no cover - state_dict_mismatch catches these first
        raise ArtifactError(f"{path}: cannot load the state_dict: {_one_line(e)}") from None
    return model


def state_dict_mismatch(model: nn.Module, state_dict: object) -> str | None:
    """Describe the first missing/unexpected key or mismatched shape of `state_dict` against `model`, else None."""
    if not isinstance(state_dict, Mapping):
        return f"expected a mapping of parameter names to tensors, found {_describe(state_dict)}"
    expected = model.state_dict()
    missing = [k for k in expected if k not in state_dict]
    unexpected = [k for k in state_dict if k not in expected]
    if missing:
        return f"missing key '{missing[0]}'{_more(missing)}"
    if unexpected:
        return f"unexpected key '{unexpected[0]}'{_more(unexpected)}"
    for key, want in expected.items():
        got = state_dict[key]
        if not isinstance(got, torch.Tensor):
            return f"'{key}' is {_describe(got)}, expected a tensor"
        if got.shape != want.shape:
            return f"shape mismatch at '{key}': found {tuple(got.shape)}, the spec needs {tuple(want.shape)}"
    return None


# ---------------------------------------------------------------- helpers
def _read(path: Path, map_location: Any, max_bytes: int) -> object:  # map_location: whatever torch.load takes
    """torch.load with weights_only=True of a regular file, each way it can fail turned into one ArtifactError."""
    try:
        f = open_regular(path, limit=max_bytes, what="saved model file")
    except FileError as e:
        raise ArtifactError(f"{path}: {e.reason}") from None
    try:
        with f, warnings.catch_warnings():
            warnings.simplefilter("ignore")  # e.g. "pickle protocol 4" notes about foreign files
            return torch.load(f, map_location=map_location, weights_only=True)
    except Exception as e:  # torch raises many types here: UnpicklingError, RuntimeError, EOFError, KeyError, ...
        message = str(e)
        if "Weights only load failed" in message:
            reason = _refusal_reason(message)
            if "GLOBAL" in reason:  # the pickle names a class or function: code a plain pickle would run
                raise ArtifactError(f"{path}: refused to load: the file holds objects other than tensors and plain "
                                    f"data ({reason}); rkcompile never unpickles code") from None
            raise ArtifactError(f"{path}: not a torch file, or truncated or corrupted: the safe unpickler stopped "
                                f"at '{reason}'") from None
        if isinstance(e, EOFError) or not message:
            raise ArtifactError(f"{path}: not a torch file: empty or truncated ({type(e).__name__})") from None
        detail = _one_line(message.split(". ")[0])  # torch's first sentence; the rest is generic advice
        if not isinstance(e, RuntimeError):
            detail = f"{type(e).__name__}: {detail}"
        raise ArtifactError(f"{path}: not a torch file, or truncated or corrupted: {detail}") from None


def _check_header(path: Path, payload: object) -> None:
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        if isinstance(payload, dict) and "format" in payload:
            found = f"a dict with format {payload['format']!r}"
        elif isinstance(payload, dict) and payload and all(isinstance(v, torch.Tensor) for v in payload.values()):
            found = f"a plain state_dict of {len(payload)} tensors"
        else:
            found = _describe(payload)
        raise ArtifactError(f"{path}: not an rkcompile model: found {found}, expected a dict with "
                            f"format '{FORMAT}' (written by rkcompile's save)")
    version = payload.get("version")
    if version != VERSION:
        raise ArtifactError(f"{path}: unsupported rkcompile model version {version!r}; this rkcompile reads "
                            f"version {VERSION}")


def _refusal_reason(message: str) -> str:
    """The line of torch's weights_only refusal that names the offending global or opcode."""
    for line in message.splitlines():
        if "GLOBAL" in line or "Unsupported" in line:
            return line.strip().rstrip(".")
    return "weights_only unpickler refused it"


def _describe(value: object) -> str:
    if isinstance(value, torch.Tensor):
        return f"a tensor of shape {tuple(value.shape)}"
    if value is None:
        return "nothing"
    name = type(value).__name__
    return f"{'an' if name[0] in 'aeiou' else 'a'} {name}"


def _more(keys: list) -> str:
    return f" (and {len(keys) - 1} more)" if len(keys) > 1 else ""


def _one_line(error: object) -> str:
    return " ".join(str(error).split())
