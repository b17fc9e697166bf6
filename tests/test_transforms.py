"""Transformations: remanifest, refine, interpolate, fold (seeds 002-004), controllers, and their CLI commands.

Numbers measured when these tests were written (float64, torch 2.14 CPU) are quoted next to the checks.
"""

from __future__ import annotations

import hashlib
import math
import re

import pytest
import torch
from click.testing import CliRunner

from rkcompile import TransformError, build, load_spec, parse_spec
from rkcompile.artifact import load, save
from rkcompile.cli import cli
from rkcompile.cli_transform import COMMANDS
from rkcompile.errors import SpecError
from rkcompile.transforms import (
    fold_step_sizes,
    graph_size,
    interpolate,
    parameter_count,
    refine,
    remanifest,
    transform,
)

for _command in COMMANDS:
    cli.add_command(_command)

# y' = G_theta(t)(y) on [0, 2]: G = linear(4->16) -> tanh -> linear(16->4), smooth, no stem or head
SMOOTH = """
name: smooth
seed: 0
input: {{features: 4}}
stages:
  - module: {{kind: mlp, hidden: [16], act: tanh}}
    integrator: rk4
    steps: 2
    weights: {weights}
    step: {{T: 2}}
"""
WEIGHTS = {"shared": "shared", "basis": "{kind: basis, pieces: 2}"}
ORDERS = {"euler": 1, "midpoint": 2, "heun3": 3, "rk4": 4}

# ContinuousNet on 8x8 images: stitch entries, basis pieces with batch norm (running statistics)
CNET = {"input": {"channels": 3, "height": 8, "width": 8}}


def smooth(weights: str) -> torch.nn.Module:
    return build(parse_spec(SMOOTH.format(weights=WEIGHTS[weights]))).double()


def inputs(*shape: int) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(1), dtype=torch.float64)


def stage_parameters(model, n: int) -> int:
    return sum(p.numel() for name, p in model.named_parameters() if name.startswith(f"stage{n}."))


def slopes(errors: list[float]) -> list[float]:
    return [math.log2(a / b) for a, b in zip(errors, errors[1:], strict=False)]


def randomize_norms(model) -> None:
    """Give every batch norm distinct statistics and affine parameters, as training would."""
    g = torch.Generator().manual_seed(2)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                for t in (module.running_mean, module.weight, module.bias):
                    t.copy_(torch.randn(t.shape, generator=g, dtype=t.dtype) * 0.3)
                module.running_var.copy_(torch.rand(module.running_var.shape, generator=g, dtype=torch.float64) + 0.5)


# ---------------------------------------------------------------- remanifest
@pytest.mark.parametrize("weights", list(WEIGHTS))
@pytest.mark.parametrize("scheme", list(ORDERS))
def test_remanifest_converges_at_the_schemes_order(weights, scheme):
    # measured slopes (4 -> 8 -> 16 steps), shared: euler 0.96 0.98, midpoint 1.96 1.98, heun3 2.91 2.95, rk4 4.02 4.00;
    # basis (open-set piece rule keeps each step in one piece): 1.07 1.03, 2.07 2.02, 3.05 3.02, 4.06 4.03
    model, x = smooth(weights), inputs(64, 4)
    reference = remanifest(model, integrator="dopri5", steps=128)(x)  # dopri5: every c in [0, 1], error ~1e-14
    errors = [(remanifest(model, integrator=scheme, steps=n)(x) - reference).abs().max().item() for n in (4, 8, 16)]
    assert all(abs(s - ORDERS[scheme]) < 0.2 for s in slopes(errors)), errors


@pytest.mark.parametrize("weights", list(WEIGHTS))
def test_remanifest_rk4_to_rk4_38_agrees_to_integrator_accuracy(weights):
    # measured (shared): |rk4 - rk4-38| = 7.6e-6, 5.1e-7, 3.3e-8 at 4, 8, 16 steps; rk4's own error 6.3e-6, 3.9e-7, 2.4e-8
    model, x = smooth(weights), inputs(64, 4)
    reference = remanifest(model, integrator="dopri5", steps=128)(x)
    gaps, errors = [], []
    for n in (4, 8, 16):
        rk4 = remanifest(model, integrator="rk4", steps=n)
        gaps.append((remanifest(rk4, integrator="rk4-38")(x) - rk4(x)).abs().max().item())
        errors.append((rk4(x) - reference).abs().max().item())
    assert all(g < 2 * e for g, e in zip(gaps, errors, strict=True))
    assert all(abs(s - 4) < 0.3 for s in slopes(gaps)), gaps


def test_remanifest_keeps_parameters_and_the_interval():
    model = build("specs/pendulum-odenet.yaml").double()  # h = 0.1, 1 step: T = 0.1 must survive
    more = remanifest(model, integrator="rk4-38", steps=10)
    assert more.spec.stages[0].blocks == 10 and more.spec.stages[0].h == pytest.approx(0.01)
    assert more.spec.data["stages"][0]["step"] == {"T": "1/10"}  # h * steps, exact
    assert parameter_count(more) == parameter_count(model)
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), more.state_dict().values(), strict=True))


def test_per_evaluation_remanifest_maps_weights_in_evaluation_order():
    model = build("specs/spirals-rk4.yaml").double().eval()  # 20 evaluations: 5 blocks of rk4
    x = inputs(16, 2)
    same = remanifest(model, integrator="rk4")
    assert torch.equal(same(x), model(x)) and same.code == model.code  # the scheme unchanged: exact
    euler = remanifest(model, integrator="euler")  # 20 blocks of 1; flat index f = b*4 + i - 1 keeps its weights
    assert parameter_count(euler) == parameter_count(model) and euler.spec.stages[0].blocks == 20
    old, new = model.state_dict(), euler.state_dict()
    for f in range(20):
        assert torch.equal(new[f"stage0.block{f}.eval1.fc1.weight"], old[f"stage0.block{f // 4}.eval{f % 4 + 1}.fc1.weight"])
        assert torch.equal(new[f"stage0.block{f}.eval1.bn1.running_var"],
                           old[f"stage0.block{f // 4}.eval{f % 4 + 1}.bn1.running_var"])
    back = remanifest(remanifest(euler, integrator="midpoint"), integrator="rk4")  # 20 -> 10x2 -> 5x4
    assert torch.equal(back(x), model(x))


def test_remanifest_does_not_touch_its_input():
    model = build("specs/spirals-rk4.yaml")
    before = {k: v.clone() for k, v in model.state_dict().items()}
    data, code = model.spec.data, model.code
    other = remanifest(model, integrator="euler")
    with torch.no_grad():
        next(other.parameters()).add_(1)  # copies, not shared storage
    assert model.code == code and model.spec.data == data
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


# ---------------------------------------------------------------- refine
def test_refine_pieces_preserves_the_function_exactly():
    model = build("specs/continuousnet-2-2-2.yaml", CNET).double()
    randomize_norms(model)
    x = inputs(4, 3, 8, 8)
    split = refine(model, steps=False)
    assert [s.weights.pieces for s in split.spec.stages] == [4, 4, 4]
    for n in range(3):  # every piece's parameters and running statistics double: M x |F|
        assert stage_parameters(split, n) - stage_parameters(model, n) == stage_parameters(model, n) - sum(
            p.numel() for name, p in model.named_parameters() if name.startswith(f"stage{n}.entry"))
    old, new = model.state_dict(), split.state_dict()
    for key, value in new.items():
        m = re.fullmatch(r"(stage\d\.piece)(\d)(\..+)", key)
        if m:
            assert torch.equal(value, old[f"{m[1]}{int(m[2]) // 2}{m[3]}"])
    for mode in ("eval", "train"):  # measured: max |diff| = 0.0 in both
        getattr(model, mode)(), getattr(split, mode)()
        assert (split(x) - model(x)).abs().max().item() <= 1e-12


def test_refine_steps_changes_the_output_by_the_integrator_error_only():
    # measured (basis, rk4): successive differences 1.0e-5, 6.3e-7, 3.9e-8 (ratio 2^4.06, 2^4.03), shrinking
    # at order 4; each difference is the integrator error of the coarser model, up to (1 - 2^-4)
    model, x = remanifest(smooth("basis"), integrator="rk4", steps=4), inputs(64, 4)
    reference = remanifest(model, integrator="dopri5", steps=128)(x)
    outputs, errors = [model(x)], [(model(x) - reference).abs().max().item()]
    for _ in range(3):
        model = refine(model)
        assert parameter_count(model) == stage_parameters(model, 0)  # the whole model is the one stage
        outputs.append(model(x))
        errors.append((outputs[-1] - reference).abs().max().item())
    changes = [(b - a).abs().max().item() for a, b in zip(outputs, outputs[1:], strict=False)]
    assert all(c <= 1.1 * e for c, e in zip(changes, errors[:-1], strict=True))
    assert all(abs(s - 4) < 0.2 for s in slopes(changes)), changes
    assert model.spec.stages[0].weights.pieces == 16 and model.spec.stages[0].blocks == 32


def test_refine_pieces_beyond_steps_keeps_every_piece():
    model = build("specs/continuousnet-2-2-2.yaml")  # 2 rk4 steps sample times 0, 1/4, 1/2, 3/4, 1 only
    assert parameter_count(refine(model, factor=4, steps=False)) == 857_850  # 8 pieces, 2 of them unsampled by 2 steps


def test_unsampled_pieces_survive_remanifest():
    model = build("specs/continuousnet-2-2-2.yaml", {"stages.0.weights.pieces": 8})  # 2 steps sample 6 pieces
    finer = remanifest(model, steps=8, stage=0)  # 8 steps sample all 8: the unsampled pieces kept their weights
    assert torch.equal(finer.state_dict()["stage0.piece2.conv1.weight"], model.state_dict()["stage0.piece2.conv1.weight"])


def test_weights_changed_by_hand_are_a_clear_error():
    model = build("specs/continuousnet-2-2-2.yaml")
    del model.stage0.piece1.conv1.weight
    with pytest.raises(TransformError) as info:
        remanifest(model, steps=4, stage=0)
    assert str(info.value) == ("remanifest: the input model has no weights 'stage0.piece1.conv1.weight' of shape "
                               "(16, 16, 3, 3) for 'stage0.piece1.conv1.weight'; was it modified after it was built?")


def test_refine_doubles_parameters_per_stage():
    model = build("specs/continuousnet-2-2-2.yaml")
    refined = refine(model)
    assert parameter_count(model) == 273_210 and parameter_count(refined) == 468_090  # 2-2-2 -> 4-4-4 (ContinuousNet code)
    assert [s.blocks for s in refined.spec.stages] == [4, 4, 4]
    shared = refine(smooth("shared"), factor=3)  # shared weights: only the steps change
    assert shared.spec.stages[0].blocks == 6 and parameter_count(shared) == parameter_count(smooth("shared"))


# ---------------------------------------------------------------- interpolate
def test_interpolate_doubles_blocks_halves_h_and_copies():
    model = build("specs/resnet14-cifar10.yaml")
    new = interpolate(model)
    # stage 0 (no entry): 2 -> 4 blocks; stages 1, 2: entry + 1 -> entry + 3 (the entry is not in `evaluations`)
    assert [s.total_evaluations for s in new.spec.stages] == [4, 3, 3]
    assert [s.h for s in new.spec.stages] == [0.5, 0.5, 0.5]
    old, state = model.state_dict(), new.state_dict()
    sources = {0: [0, 0, 1, 1], 1: [0, 0, 0], 2: [0, 0, 0]}  # after an entry, block 0's copy comes first
    for n, blocks in sources.items():
        for b, source in enumerate(blocks):
            for key in ("eval1.conv1.weight", "eval1.bn2.running_mean", "eval1.bn2.bias"):
                assert torch.equal(state[f"stage{n}.block{b}.{key}"], old[f"stage{n}.block{source}.{key}"])
    assert all(torch.equal(state[k], v) for k, v in old.items() if ".entry." in k or k.startswith(("stem", "head")))
    twice = interpolate(new)
    assert [s.total_evaluations for s in twice.spec.stages] == [8, 7, 7] and twice.spec.stages[0].h == 0.25
    assert parameter_count(twice) == 755_802  # ResNet-50 (8-8-8) of Chang et al. 2018's Table 5


def test_interpolated_resnet_stays_close():
    # Why close: each block y + h F(y) becomes two half steps, y + h/2 F(y) + h/2 F(y + h/2 F(y)), which differ
    # by (h^2/4) F'F: second order in the size of F. Measured (float64, residual scale s = last BN gamma factor):
    # stage 0 alone, relative output change 5.0e-4, 1.2e-4, 2.9e-5 at s = 0.2, 0.1, 0.05 (x4 per halving).
    # A stage with an entry gets one extra half step of its first block (the copy after the entry, whose
    # step the original did not take; the compiler does not scale entries by h): first order,
    # 1.6e-2, 8.3e-3, 4.3e-3, about half of what the blocks contribute.
    x = inputs(2, 3, 16, 16)
    changes = {0: [], 1: []}
    for s in (0.2, 0.1, 0.05):
        model = build("specs/resnet14-cifar10.yaml", {"input": {"channels": 3, "height": 16, "width": 16}})
        model = model.double().eval()
        with torch.no_grad():
            for name, p in model.named_parameters():
                if ".block" in name and name.endswith("bn2.weight"):
                    p.mul_(s)
        out = model(x)
        for n in changes:
            changes[n].append(((interpolate(model, stage=n)(x) - out).norm() / out.norm()).item())
    assert changes[0][0] < 1e-3 and all(abs(v - 2) < 0.3 for v in slopes(changes[0])), changes
    assert changes[1][0] < 0.05 and all(abs(v - 1) < 0.3 for v in slopes(changes[1])), changes


def test_interpolate_rk4_blocks_and_learned_steps():
    model = build("specs/spirals-rk4.yaml", {"stages.0.step": {"learn": "scalar", "h": 1}})
    with torch.no_grad():
        for b in range(5):
            model.get_parameter(f"stage0.block{b}.h").fill_(b + 1)
    new = interpolate(model)
    assert new.spec.stages[0].blocks == 10 and new.spec.stages[0].total_evaluations == 40
    assert [new.get_parameter(f"stage0.block{b}.h").item() for b in range(10)] == [
        0.5, 0.5, 1.0, 1.0, 1.5, 1.5, 2.0, 2.0, 2.5, 2.5]


# ---------------------------------------------------------------- learned step sizes, controllers, fold
@pytest.mark.parametrize("controller", ["none", "fc", "lstm"])
def test_fold_gives_identical_outputs_without_step_parameters(controller):
    step = {"learn": "channel", "h": "1/2"} | ({} if controller == "none" else {"controller": controller})
    model = build("specs/ho-resnet58-rk4.yaml", {"stages.0.evaluations": 8, "stages.0.step": step,
                                                  "input": {"channels": 3, "height": 8, "width": 8}})
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith(".h"):
                p.uniform_(0.2, 0.9)
    x = torch.randn(2, 3, 8, 8)
    model(x).sum().backward()  # usable in training: the controller (or h) gets gradients
    learned = [n for n, p in model.named_parameters() if n.endswith(".h") or "controller" in n]
    assert learned and all(model.get_parameter(n).grad is not None for n in learned)
    folded = fold_step_sizes(model)
    assert not [n for n, _ in folded.named_parameters() if n.endswith(".h") or "controller" in n]
    assert [n for n, _ in folded.named_buffers() if n.endswith(".h")] == ["stage0.block0.h", "stage0.block1.h"]
    assert folded.spec.data["stages"][0]["step"] == {"learn": "channel", "h": "1/2", "frozen": True}
    extra = {"none": 128, "fc": 128 + 149_536, "lstm": 128 + 76_880}[controller]  # controller sizes at 64 channels
    assert parameter_count(model) - parameter_count(folded) == extra
    assert graph_size(folded) == 71 and graph_size(model) == {"none": 71, "fc": 89, "lstm": 93}[controller]
    for mode in ("train", "eval"):
        getattr(model, mode)(), getattr(folded, mode)()
        assert torch.equal(folded(x), model(x))


def test_controller_step_sizes_lie_in_0_h():
    model = build("specs/spirals-rk4.yaml", {"stages.0.step": {"learn": "channel", "controller": "lstm", "h": 2}})
    folded = fold_step_sizes(model)
    steps = torch.stack([folded.get_buffer(f"stage0.block{b}.h") for b in range(5)])
    assert steps.shape == (5, 8) and bool(((steps > 0) & (steps < 2)).all())
    assert steps.std(0).max() > 0  # the LSTM state differs from block to block


def test_folded_model_saves_and_loads(tmp_path):
    model = build("specs/spirals-rk4.yaml", {"stages.0.step": {"learn": "channel", "controller": "fc"}}).eval()
    folded = fold_step_sizes(model)
    back = load(save(folded, tmp_path / "folded.pt")).eval()
    x = torch.randn(8, 2)
    assert torch.equal(back(x), model(x))
    with pytest.raises(TransformError, match=r"^fold: no stage learns its step size \(step.learn\), so there is "
                                             r"nothing to fold$"):
        fold_step_sizes(back)


@pytest.mark.parametrize("step, message", [
    ({"controller": "fc"}, "a step-size controller ('fc') gives one step per channel: it needs 'learn: channel', "
                           "found 'learn: none'"),
    ({"learn": "channel", "reduction": 2}, "'reduction' sets a controller's hidden width: it needs 'controller: fc' "
                                           "or 'lstm'"),
    ({"frozen": True}, "'frozen: true' keeps learned step sizes constant: it needs 'learn: scalar' or 'channel'"),
    ({"learn": "channel", "controller": "lstm", "frozen": True}, "a frozen step has no controller: remove "
                                                                 "'controller: lstm' (fold_step_sizes does both)"),
])
def test_step_field_errors(step, message):
    with pytest.raises(SpecError) as info:
        load_spec("specs/spirals-rk4.yaml", {"stages.0.step": step})
    assert info.value.message == message and info.value.path == "stages[0].step"


def test_controller_needs_weights():
    """Found by hypothesis: `check` accepted a controller on a weightless F that `build` then refused."""
    with pytest.raises(SpecError) as info:
        load_spec("specs/spirals-rk4.yaml", {"stages.0.step": {"learn": "channel", "controller": "fc"},
                                         "stages.0.module": {"kind": "layers", "layers": ["tanh"]}})
    assert info.value.path == "stages[0].step.controller"
    assert info.value.message == "a step-size controller reads the conv or linear weights of F; this F has none"


# ---------------------------------------------------------------- impossible transformations
@pytest.mark.parametrize("spec, apply, message", [
    ("specs/resnet14-cifar10.yaml", lambda m: refine(m), "refine: no stage to transform: stages 0, 1, 2 have "
     "per-evaluation weights: refine splits basis pieces and multiplies steps; use interpolate"),
    ("specs/resnet14-cifar10.yaml", lambda m: refine(m, stage=1), "refine: stage 1 has per-evaluation weights: "
     "refine splits basis pieces and multiplies steps; use interpolate"),
    ("specs/continuousnet-2-2-2.yaml", lambda m: interpolate(m, stage=0), "interpolate: stage 0 has basis weights: "
     "interpolate doubles per-evaluation blocks; use refine instead"),
    ("specs/continuousnet-2-2-2.yaml", lambda m: interpolate(m, stage=3), "interpolate: no stage 3; the model has "
     "stages 0 to 2"),
    ("specs/continuousnet-2-2-2.yaml", lambda m: remanifest(m, integrator="rk5"), "remanifest: unknown tableau 'rk5' "
     "(did you mean 'dopri5'?); valid names: euler, heun, midpoint, ralston, bs3, heun3, kutta3, ssprk3, rk4, "
     "rk4-38, rkf45, cash-karp, dopri5, tsit5, pd8, verner89; or a method of another family (multistep: ab2, ab3, "
     "ab4, leapfrog, lm-resnet, momentum, second-order)"),
    ("specs/continuousnet-2-2-2.yaml", lambda m: remanifest(m, integrator={"c": [0, 1], "A": [[0, 0], [1, 0]],
     "b": [1, 1]}), "remanifest: invalid inline tableau: tableau 'inline': not consistent: the weights b sum to 2 "
     "instead of 1 (difference 1)"),
    ("specs/spirals-rk4.yaml", lambda m: remanifest(m, integrator="verner89"), "remanifest: stage 0: its budget of "
     "20 evaluations does not divide into blocks of 14 (verner89 evaluates F 14 times per step); budgets that "
     "would: 14, 28"),
    ("specs/spirals-rk4.yaml", lambda m: remanifest(m, integrator="rk4-38", steps=3), "remanifest: stage 0 has "
     "per-evaluation weights, a fixed budget of 20 evaluations; 3 steps of rk4-38 (4 evaluations each) make 12"),
    ("specs/ho-resnet58-verner89-adaptive.yaml", lambda m: remanifest(m, integrator="rk4"), "remanifest: stage 0 "
     "learns one step size per block: its 2 blocks cannot become 7; pick a tableau with 14 evaluations per step"),
    ("specs/spirals-rk4.yaml", lambda m: remanifest(m), "remanifest: give an integrator and/or a number of steps"),
    ("specs/continuousnet-2-2-2.yaml", lambda m: refine(m, factor=1), "refine: factor must be an integer >= 2, "
     "found 1"),
    ("specs/continuousnet-2-2-2.yaml", lambda m: refine(m, pieces=False, steps=False), "refine: nothing to do: "
     "pieces and steps are both off"),
    ("specs/pendulum-odenet.yaml", lambda m: refine(m, steps=False), "refine: no stage to transform: stage 0 has "
     "shared weights: there are no pieces to split (refine its steps instead)"),
    ("specs/pendulum-odenet.yaml", lambda m: transform(m, "stretch"), "unknown transformation 'stretch'; expected "
     "one of remanifest, refine, interpolate, fold, project"),
])
def test_impossible_transformations_say_why(spec, apply, message):
    model = build(spec)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(TransformError) as info:
        apply(model)
    assert str(info.value) == message
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_transform_reports_sources():
    model = build("specs/continuousnet-2-2-2.yaml")
    new, sources = transform(model, "refine", steps=False)
    assert sources["stage1.piece3.conv1.weight"] == "stage1.piece1.conv1.weight"
    assert sources["stage1.piece2.bn1.running_var"] == "stage1.piece1.bn1.running_var"
    assert set(sources) == set(new.state_dict())


# ---------------------------------------------------------------- command line
@pytest.fixture
def artifact(tmp_path):
    path = tmp_path / "cnet.pt"
    save(build("specs/continuousnet-2-2-2.yaml", CNET), path)
    return path


def _digest(path) -> tuple[str, int]:
    return hashlib.sha256(path.read_bytes()).hexdigest(), path.stat().st_mtime_ns


@pytest.mark.parametrize("args, after", [
    (["remanifest", "--integrator", "rk4-38", "--steps", "11"], "273,210"),
    (["remanifest", "--stage", "1", "--integrator", "euler"], "273,210"),
    (["refine"], "468,090"),
    (["refine", "--no-steps"], "468,090"),
    (["refine", "--factor", "4"], "857,850"),
])
def test_cli_transforms_print_sizes_and_write(artifact, tmp_path, args, after):
    out, digest = tmp_path / "out.pt", _digest(artifact)
    result = CliRunner().invoke(cli, [args[0], str(artifact), *args[1:], "-o", str(out)])
    assert result.exit_code == 0, result.output
    lines = [line for line in result.output.splitlines() if not line.startswith("warning: ")]  # e.g. 11 steps, 2 pieces
    assert lines[0].startswith("before:") and "273,210 parameters" in lines[0] and "graph nodes" in lines[0]
    assert lines[1].startswith("after:") and f"{after} parameters" in lines[1]
    assert lines[2] == f"wrote {out}"
    assert parameter_count(load(out)) == int(after.replace(",", ""))
    assert _digest(artifact) == digest


def test_cli_interpolate_and_fold(tmp_path):
    source, out = tmp_path / "resnet.pt", tmp_path / "deeper.pt"
    save(build("specs/resnet14-cifar10.yaml"), source)
    result = CliRunner().invoke(cli, ["interpolate", str(source), "-o", str(out)])
    assert result.exit_code == 0 and "366,938 parameters" in result.output.splitlines()[1]
    learned = tmp_path / "learned.pt"
    save(build("specs/spirals-rk4.yaml", {"stages.0.step": {"learn": "channel", "controller": "lstm"}}), learned)
    result = CliRunner().invoke(cli, ["fold", str(learned), "-o", str(tmp_path / "folded.pt")])
    assert result.exit_code == 0, result.output
    assert "1,818 parameters" in result.output.splitlines()[1]  # the LSTM controller's 138 are gone


@pytest.mark.parametrize("args, message", [
    (["refine", "{model}", "-o", "{model}"], "error: {model}: is the input model; write the result to another file"),
    (["interpolate", "{model}", "-o", "{out}"], "error: interpolate: no stage to transform: stages 0, 1, 2 have basis "
     "weights: interpolate doubles per-evaluation blocks; use refine instead"),
    (["remanifest", "{model}", "--integrator", "rk5", "-o", "{out}"], "error: remanifest: unknown tableau 'rk5' (did "
     "you mean 'dopri5'?); valid names: euler, heun, midpoint, ralston, bs3, heun3, kutta3, ssprk3, rk4, rk4-38, "
     "rkf45, cash-karp, dopri5, tsit5, pd8, verner89; or a method of another family (multistep: ab2, ab3, ab4, "
     "leapfrog, lm-resnet, momentum, second-order)"),
    (["fold", "{model}", "-o", "{out}"], "error: fold: no stage learns its step size (step.learn), so there is "
     "nothing to fold"),
    (["refine", "{missing}", "-o", "{out}"], "error: {missing}: no such file"),
])
def test_cli_errors_leave_files_untouched(artifact, tmp_path, args, message):
    names = {"model": str(artifact), "out": str(tmp_path / "out.pt"), "missing": str(tmp_path / "none.pt")}
    digest = _digest(artifact)
    result = CliRunner().invoke(cli, [a.format(**names) for a in args])
    assert result.exit_code == 1
    assert result.output.strip() == message.format(**names)
    assert _digest(artifact) == digest and not (tmp_path / "out.pt").exists()


# ---------------------------------------------------------------- T kept in every weight mode; Tableau objects
@pytest.mark.parametrize(("integrator", "blocks", "h"), [("rk4", 2, 4), ("midpoint", 4, 2), ("euler", 8, 1)])
def test_per_evaluation_remanifest_keeps_the_interval_T(integrator, blocks, h):
    """8 Euler blocks of h = 1 integrate [0, 8]; so must 2 RK4 blocks (h = 4), as basis and shared stages do."""
    model = build("specs/spirals-rk4.yaml", {"stages.0.integrator": "euler", "stages.0.evaluations": 8})
    new = remanifest(model, integrator=integrator)
    st = new.spec.stages[0]
    assert (st.blocks, st.h, st.h * st.blocks) == (blocks, h, 8)
    assert new.spec.data["stages"][0]["step"] == ({"T": "8"} if blocks != 8 else {"h": 1})


def test_per_evaluation_remanifest_of_an_h_stage_matches_a_hand_written_interval():
    """Float64, a linear F_i = W_i y: RK4 over T = 8 in 2 steps of h = 4 from the same weights, written out by hand."""
    text = ("name: lin\ninput: {features: 2}\nstages:\n  - features: 2\n    module: {kind: layers, layers: "
            "[{kind: linear, bias: false}]}\n    integrator: euler\n    evaluations: 8\n")
    model = build(parse_spec(text)).double().eval()
    new = remanifest(model, integrator="rk4").double().eval()
    weights = dict(new.named_parameters())
    assert len(weights) == 8  # one bias-free weight per evaluation
    w = [[weights[f"stage0.block{b}.eval{i}.fc1.weight"] for i in range(1, 5)] for b in range(2)]
    x = torch.randn(3, 2, dtype=torch.float64)
    y = x
    for b in range(2):
        k1 = y @ w[b][0].T
        k2 = (y + 2 * k1) @ w[b][1].T
        k3 = (y + 2 * k2) @ w[b][2].T
        k4 = (y + 4 * k3) @ w[b][3].T
        y = y + 4 / 6 * (k1 + 2 * k2 + 2 * k3 + k4)
    assert torch.allclose(new(x), y, rtol=1e-12, atol=1e-12)


def test_remanifest_takes_a_tableau_object(tmp_path):
    from rkcompile import Tableau, get_tableau

    model = build("specs/continuousnet-2-2-2.yaml").double().eval()
    x = torch.randn(2, 3, 32, 32, dtype=torch.float64)
    by_object = remanifest(model, integrator=get_tableau("heun"))
    assert by_object.spec.data["stages"][0]["integrator"] == "heun"
    assert torch.equal(by_object.double().eval()(x), remanifest(model, integrator="heun").double().eval()(x))
    mine = Tableau.from_text("mine", ["0", "2/3"], [[], ["2/3"]], ["1/4", "3/4"])
    inline = remanifest(model, integrator=mine, stage=1)
    assert inline.spec.stages[1].tableau == mine and inline.spec.stages[0].tableau.name == "rk4"
    save(inline, tmp_path / "m.pt")
    assert load(tmp_path / "m.pt").spec.stages[1].tableau == mine
