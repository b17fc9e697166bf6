"""Export a compiled model for inference: torch.export (`.pt2`, an ExportedProgram) or ONNX (`.onnx`, dynamo path).

The model is exported in eval mode (batch norm uses its running statistics) with a dynamic batch dimension.
Learned step sizes (`step.learn`, Yang et al. 2020's controllers) are folded into constants first with
`fold_step_sizes`, so the exported graph holds no step-size parameter and no controller.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import fx

from rkcompile.errors import ExportError

__all__ = ["FORMATS", "check_destination", "example_input", "export", "export_program", "prepare"]

FORMATS = {".pt2": "torch.export", ".onnx": "ONNX"}
_DYNAMIC_BATCH = ({0: torch.export.Dim("batch", min=1, max=1 << 16)},)  # the one input's dimension 0


def example_input(model: fx.GraphModule, batch: int = 2) -> torch.Tensor:
    """A random input of the shape the model's spec declares (images NCHW or vectors NF), on the model's device."""
    spec = _spec(model)
    i = spec.input
    shape = (batch, i.channels, i.height, i.width) if i.is_image else (batch, i.features)
    p = next(iter(model.parameters()), None)
    return torch.randn(shape, device=p.device if p is not None else None, dtype=p.dtype if p is not None else None)


def prepare(model: fx.GraphModule) -> tuple[fx.GraphModule, bool]:
    """The model to export: learned step sizes folded into constants (a copy) or the model itself; and whether folded."""
    from rkcompile.transforms import fold_step_sizes

    spec = _spec(model)
    if any(s.step.learn != "none" and not s.step.frozen for s in spec.stages):
        return fold_step_sizes(model), True
    return model, False


def export_program(model: fx.GraphModule, example: torch.Tensor | None = None) -> torch.export.ExportedProgram:
    """torch.export the model (eval mode, learned steps folded) with a dynamic batch dimension."""
    model, _ = prepare(model)
    x = example_input(model) if example is None else example
    with _eval(model):
        try:
            return torch.export.export(model, (x,), dynamic_shapes=_DYNAMIC_BATCH)
        except Exception as e:  # torch.export reports unsupported constructs with many exception types
            raise ExportError(f"torch.export failed: {type(e).__name__}: {_first_line(e)}") from e


def export(model: fx.GraphModule, path: str | Path, example: torch.Tensor | None = None, *,
           inputs: tuple = ()) -> Path:
    """Write `model` to `path`: `.pt2` via torch.export.save, `.onnx` via torch.onnx.export(dynamo=True); return the path.

    The `.pt2` file loads with `torch.export.load(path).module()`; the `.onnx` file runs in onnxruntime. The file is
    written by rkcompile's one atomic writer, so a failed export never clobbers an existing file, and a target that
    is one of `inputs` is refused.
    """
    from rkcompile.files import check_target, write_file

    path = Path(path)
    kind = check_destination(path)
    check_target(path, inputs)  # refused before the (slow) export
    program = export_program(model, example)
    if kind == "torch.export":
        write_file(path, lambda f: torch.export.save(program, f), inputs=inputs)
    else:
        data = _onnx_bytes(program)
        write_file(path, data, inputs=inputs)
    return path


def check_destination(path: str | Path) -> str:
    """The export format named by `path`'s suffix ('torch.export' or 'ONNX'); ExportError if unknown or unwritable."""
    path = Path(path)
    kind = FORMATS.get(path.suffix.lower())
    if kind is None:
        raise ExportError(f"{path}: unknown export format '{path.suffix}'; expected one of {', '.join(FORMATS)}")
    if not path.parent.is_dir():
        raise ExportError(f"{path}: no such directory '{path.parent}'")
    return kind


def _onnx_bytes(program: torch.export.ExportedProgram) -> bytes:
    """Convert an ExportedProgram to a serialized ONNX model (torch's dynamo exporter, needs onnx and onnxscript)."""
    try:
        import onnx  # noqa: F401
        import onnxscript  # noqa: F401
    except ImportError as e:
        raise ExportError(f"ONNX export needs the onnx and onnxscript packages ({e.name} is missing): "
                          "pip install 'rkcompile[export]'") from None
    try:
        onnx_program = torch.onnx.export(program, dynamo=True, verbose=False)
    except Exception as e:  # the exporter raises its own error types per failing operator
        raise ExportError(f"ONNX export failed: {type(e).__name__}: {_first_line(e)}") from e
    assert onnx_program is not None  # dynamo=True always returns a program (None only from the legacy exporter)
    return onnx_program.model_proto.SerializeToString()


def _spec(model):
    spec = getattr(model, "spec", None)
    if spec is None:
        raise ExportError("export needs a model compiled by rkcompile (a GraphModule with .spec)")
    return spec


def _first_line(error: Exception) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else "(no message)"


class _eval:
    """Put a module in eval mode for the duration of a block, then restore its train/eval flags."""

    def __init__(self, module: torch.nn.Module) -> None:
        self.module = module
        self.modes = {m: m.training for m in module.modules()}

    def __enter__(self):
        self.module.eval()
        return self.module

    def __exit__(self, *exc):
        for m, training in self.modes.items():
            m.training = training
        return False
