"""Export: torch.export (.pt2) and ONNX (.onnx, run in onnxruntime) give the eager model's outputs, per weight mode."""

from __future__ import annotations

import sys

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from rkcompile import ExportError, build, export, save
from rkcompile.cli import cli
from rkcompile.export import example_input, export_program

ort = pytest.importorskip("onnxruntime")

SMALL_IMAGE = {"input": {"channels": 3, "height": 8, "width": 8}}
MODELS = {
    # HO-ResNet's F (conv-BN-ReLU-conv-BN), one F per evaluation, 2 RK4 blocks
    "per-evaluation": ("specs/ho-resnet58-rk4.yaml", {"stages.0.evaluations": 8, **SMALL_IMAGE}),
    # one F shared by every evaluation of 3 midpoint steps
    "shared": ("specs/spirals-rk4.yaml", {"stages.0.weights": "shared", "stages.0.integrator": "midpoint",
                                          "stages.0.evaluations": 6}),
    # ContinuousNet: stitches and piecewise-constant basis pieces with batch norm
    "basis": ("specs/continuousnet-2-2-2.yaml", SMALL_IMAGE),
    # Yang et al. 2020's learned per-channel steps with an fc controller: folded before export
    "learned-step": ("specs/spirals-rk4.yaml", {"stages.0.step": {"learn": "channel", "controller": "fc"}}),
}


def trained_like(kind: str) -> torch.nn.Module:
    """The model of `kind` with random batch-norm statistics and step sizes, so eval mode differs from train mode."""
    spec, overrides = MODELS[kind]
    model = build(spec, overrides)
    generator = torch.Generator().manual_seed(7)
    with torch.no_grad():
        for name, tensor in [*model.named_buffers(), *model.named_parameters()]:
            if name.endswith("running_mean") or name.endswith(".bias"):
                tensor.copy_(torch.randn(tensor.shape, generator=generator) * 0.1)
            elif name.endswith("running_var") or name.endswith(".h"):
                tensor.copy_(torch.rand(tensor.shape, generator=generator) * 0.5 + 0.5)
    return model


@pytest.mark.parametrize("kind", [k if k == "shared" else pytest.param(k, marks=pytest.mark.slow) for k in MODELS])
def test_torch_export_and_onnx_equal_eager(kind, tmp_path):
    model = trained_like(kind)
    x = example_input(model, batch=5)  # not the exported example's batch (2): the batch dimension is dynamic
    with torch.no_grad():
        eager = model.eval()(x)
    model.train()

    program = torch.export.load(export(model, tmp_path / "m.pt2"))
    assert isinstance(program, torch.export.ExportedProgram)
    with torch.no_grad():
        assert (program.module()(x) - eager).abs().max().item() <= 1e-5
    assert model.training, "export must restore the model's train mode"

    export(model, tmp_path / "m.onnx")
    session = ort.InferenceSession(str(tmp_path / "m.onnx"), providers=["CPUExecutionProvider"])
    (out,) = session.run(None, {session.get_inputs()[0].name: x.numpy()})
    assert out.shape == tuple(eager.shape)
    assert np.abs(out - eager.numpy()).max() <= 1e-5


def test_learned_steps_are_constants_in_the_exported_program():
    model = trained_like("learned-step")
    learned = [n for n, _ in model.named_parameters() if n.endswith(".h") or "controller" in n]
    assert learned
    program = export_program(model)
    exported = set(program.graph_signature.parameters)
    assert not [n for n in exported if n.endswith(".h") or "controller" in n]
    assert {f"stage0.block{b}.h" for b in range(5)} <= set(program.graph_signature.buffers)


def test_export_keeps_an_existing_file_when_the_format_is_unknown(tmp_path):
    target = tmp_path / "m.onnx"
    target.write_bytes(b"keep")
    model = build("specs/pendulum-odenet.yaml")
    with pytest.raises(ExportError, match=r"m\.tflite: unknown export format '\.tflite'; expected one of \.pt2, \.onnx"):
        export(model, tmp_path / "m.tflite")
    with pytest.raises(ExportError, match=r"no such directory"):
        export(model, tmp_path / "missing" / "m.pt2")
    assert target.read_bytes() == b"keep" and sorted(p.name for p in tmp_path.iterdir()) == ["m.onnx"]


def test_export_needs_a_compiled_model(tmp_path):
    with pytest.raises(ExportError, match=r"needs a model compiled by rkcompile \(a GraphModule with \.spec\)"):
        export(torch.nn.Linear(2, 2), tmp_path / "m.pt2")


def test_onnx_without_its_packages_says_what_to_install(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxscript", None)  # makes `import onnxscript` raise ImportError
    with pytest.raises(ExportError, match=r"needs the onnx and onnxscript packages \(onnxscript is missing\): "
                                          r"pip install 'rkcompile\[export\]'"):
        export(build("specs/pendulum-odenet.yaml"), tmp_path / "m.onnx")
    assert not list(tmp_path.iterdir())


def test_cli_export(tmp_path):
    model = trained_like("learned-step").eval()
    saved = save(model, tmp_path / "m.pt")
    runner = CliRunner()
    result = runner.invoke(cli, ["export", str(saved), "-o", str(tmp_path / "m.pt2")])
    assert result.exit_code == 0, result.output
    assert result.output == f"wrote {tmp_path / 'm.pt2'} (torch.export) (learned step sizes folded into constants)\n"
    x = example_input(model, batch=3)
    with torch.no_grad():
        assert (torch.export.load(tmp_path / "m.pt2").module()(x) - model(x)).abs().max().item() <= 1e-5


@pytest.mark.parametrize("args, code, message", [
    (["{pt}", "-o", "{tmp}/m.txt"], 1, "error: {tmp}/m.txt: unknown export format '.txt'; expected one of .pt2, .onnx\n"),
    (["{tmp}/nope.pt", "-o", "{tmp}/m.pt2"], 1, "error: {tmp}/nope.pt: no such file\n"),
    (["{pt}", "-o", "{pt}"], 1, "error: cannot write {pt}: it is the input file {pt}; write the result to another file\n"),
    (["{pt}"], 2, "Missing option '-o' / '--output'"),
    (["{tmp}/foreign.pt", "-o", "{tmp}/m.pt2"], 1, "error: {tmp}/foreign.pt: "),
])
def test_cli_export_errors(tmp_path, args, code, message):
    pt = save(build("specs/pendulum-odenet.yaml"), tmp_path / "m.pt")
    torch.save({"weights": torch.zeros(2)}, tmp_path / "foreign.pt")
    fill = {"pt": pt, "tmp": tmp_path}
    result = CliRunner().invoke(cli, ["export", *(a.format(**fill) for a in args)])
    assert result.exit_code == code
    assert message.format(**fill) in result.output
    assert "Traceback" not in result.output
    assert not (tmp_path / "m.pt2").exists() and not (tmp_path / "m.txt").exists()
