"""Schedule: refinement and interpolation inside a plain PyTorch training loop on generated data."""

from __future__ import annotations

import math

import pytest
import torch

from rkcompile import TransformError, build, parse_spec
from rkcompile.training import Schedule, carry_state, cosine

# a small ContinuousNet on vectors: theta(t) on 1 basis piece, 1 rk4 step; refined to 2 then 4 pieces and steps
CNET = """
name: tiny-continuousnet
seed: 0
input: {features: 2}
stem: {kind: layers, layers: [{kind: linear, features: 16}, tanh]}
stages:
  - features: 16
    module: {kind: mlp, hidden: [32], act: tanh}
    integrator: rk4
    steps: 1
    weights: {kind: basis, pieces: 1}
    step: {T: 1}
output: {classes: 2}
"""


def spirals(n: int = 256, turns: float = 1.5) -> tuple[torch.Tensor, torch.Tensor]:
    """Two interleaved spirals (Feldhausen and Vallbo's task), generated with a fixed seed."""
    g = torch.Generator().manual_seed(0)
    t = torch.rand(n, generator=g) * turns * math.pi + 0.3
    label = torch.arange(n) % 2
    angle = t + math.pi * label
    x = torch.stack([torch.cos(angle), torch.sin(angle)], 1) * (2 * t / (turns * math.pi)).unsqueeze(1)
    return x, label


def test_two_refinements_keep_the_loss_falling():
    # measured (Adam, lr 0.01, cosine cycles of 20 epochs, full batch): loss 0.803 -> 0.451 (1 piece x 1 rk4
    # step), 0.449 -> 0.335 (2 x 2), 0.332 -> 0.0032 (4 x 4); at each refinement the loss moves by 1.9e-5 and
    # 2.5e-5 (pieces copied exactly; doubling the steps moves the output by rk4's error only)
    torch.manual_seed(0)
    x, y = spirals()
    model = build(parse_spec(CNET))
    schedule = Schedule(model, lambda m: torch.optim.Adam(m.parameters(), lr=0.01), at={20: "refine", 40: "refine"},
                        epochs=60, lr_scheduler=cosine(0.001))

    def loss_of(m):
        return torch.nn.functional.cross_entropy(m(x), y)

    losses, jumps = [], []
    for epoch in range(60):
        previous, old_model = schedule.optimizer, schedule.model
        with torch.no_grad():
            before = loss_of(old_model).item()
        model, optimizer = schedule.begin_epoch(epoch)
        if epoch in (20, 40):
            with torch.no_grad():
                jumps.append(abs(loss_of(model).item() - before))
            assert optimizer is not previous
            assert optimizer.param_groups[0]["lr"] == 0.01  # a new cosine cycle starts at the top
            state = optimizer.state[model.get_parameter("stage0.piece1.fc1.weight")]  # child of piece 0
            old = previous.state[old_model.get_parameter("stage0.piece0.fc1.weight")]
            assert torch.equal(state["exp_avg"], old["exp_avg"]) and torch.equal(state["step"], old["step"])
        optimizer.zero_grad()
        loss = loss_of(model)
        loss.backward()
        optimizer.step()
        schedule.end_epoch()
        losses.append(loss.item())
    assert [s.weights.pieces for s in model.spec.stages] == [4] and model.spec.stages[0].blocks == 4
    assert schedule.history == [(20, "refine"), (40, "refine")]
    for start, end in ((0, 20), (20, 40), (40, 60)):
        assert losses[end - 1] < 0.8 * losses[start], losses[start:end]
    assert max(jumps) < 1e-3, jumps


def test_interpolation_carries_momentum_and_continues_the_cycle():
    torch.manual_seed(0)
    model = build("specs/spirals-rk4.yaml", {"stages.0.integrator": "euler", "stages.0.evaluations": 2})
    x, y = spirals(64)
    schedule = Schedule(model, lambda m: torch.optim.SGD(m.parameters(), lr=0.1, momentum=0.9), at={2: "interpolate"},
                        epochs=4, lr_scheduler=cosine(0.0), reset_lr=False)
    for epoch in range(4):
        before, old_model = schedule.optimizer, schedule.model
        model, optimizer = schedule.begin_epoch(epoch)
        if epoch == 2:
            assert model.spec.stages[0].blocks == 4 and model.spec.stages[0].h == 0.5
            old = dict(old_model.named_parameters())
            for b in range(4):  # each inserted copy takes its source's momentum buffer
                new = optimizer.state[model.get_parameter(f"stage0.block{b}.eval1.fc1.weight")]["momentum_buffer"]
                assert torch.equal(new, before.state[old[f"stage0.block{b // 2}.eval1.fc1.weight"]]["momentum_buffer"])
            assert optimizer.param_groups[0]["lr"] == pytest.approx(0.1 * (1 + math.cos(math.pi * 2 / 4)) / 2)
        optimizer.zero_grad()
        torch.nn.functional.cross_entropy(model(x), y).backward()
        optimizer.step()
        schedule.end_epoch()


def test_callable_events_and_bad_events():
    model = build(parse_spec(CNET))
    schedule = Schedule(model, lambda m: torch.optim.SGD(m.parameters(), lr=0.1), at={1: lambda m: m, 2: 42})
    schedule.begin_epoch(0)
    assert schedule.begin_epoch(1)[0] is model and schedule.history == [(1, "<lambda>")]
    with pytest.raises(TransformError, match=r"^schedule: an event is a transformation name, \(name, options\) or a "
                                             r"callable, found int$"):
        schedule.begin_epoch(2)
    with pytest.raises(TransformError, match=r"^cosine: the cycle's length is unknown; give the Schedule its total "
                                             r"'epochs'$"):
        Schedule(model, lambda m: torch.optim.SGD(m.parameters(), lr=0.1), lr_scheduler=cosine())


def test_carry_state_counts_only_matching_parameters():
    a, b = build(parse_spec(CNET)), build(parse_spec(CNET))
    old = torch.optim.SGD(a.parameters(), lr=0.1, momentum=0.9)
    a(torch.randn(4, 2)).sum().backward()
    old.step()
    new = torch.optim.SGD(b.parameters(), lr=0.1, momentum=0.9)
    count = carry_state(old, new, a, b, {"head.fc.weight": "head.fc.weight", "head.fc.bias": "stem.fc1.bias"})
    assert count == 1 and len(new.state) == 1  # the bias's source has another shape


@pytest.mark.parametrize("reset_lr", [True, False])
def test_state_dict_resumes_the_schedule_exactly(tmp_path, reset_lr):
    """Stopping after the event at epoch 2 and resuming from the saved state gives the uninterrupted run's weights."""
    from rkcompile import load, save

    x, y = spirals(64)

    def schedule_of(model):
        return Schedule(model, lambda m: torch.optim.SGD(m.parameters(), lr=0.1, momentum=0.9),
                        at={2: "interpolate"}, epochs=5, lr_scheduler=cosine(0.0), reset_lr=reset_lr)

    def epochs(schedule, numbers, lrs):
        for epoch in numbers:
            model, optimizer = schedule.begin_epoch(epoch)
            lrs.append(optimizer.param_groups[0]["lr"])
            optimizer.zero_grad()
            torch.nn.functional.cross_entropy(model(x), y).backward()
            optimizer.step()
            schedule.end_epoch()
        return schedule.model

    overrides = {"stages.0.integrator": "euler", "stages.0.evaluations": 2}
    whole_lrs, part_lrs = [], []
    whole = epochs(schedule_of(build("specs/spirals-rk4.yaml", overrides)), range(5), whole_lrs)
    first = schedule_of(build("specs/spirals-rk4.yaml", overrides))
    epochs(first, range(3), part_lrs)
    torch.save(first.state_dict(), tmp_path / "state.pt")
    state = torch.load(tmp_path / "state.pt", weights_only=True)  # plain data and tensors only
    assert state["history"] == [[2, "interpolate"]] and state["cycle_start"] == 2
    resumed = schedule_of(load(save(first.model, tmp_path / "model.pt")))
    resumed.load_state_dict(state)
    assert resumed.history == [(2, "interpolate")]
    again = epochs(resumed, range(3, 5), part_lrs)
    assert part_lrs == whole_lrs and len(set(whole_lrs)) > 2  # the cosine cycle continued, not restarted
    reference = whole.state_dict()
    assert all(torch.equal(v, reference[k]) for k, v in again.state_dict().items())


def test_readme_schedule_example_runs_as_documented(capsys):
    from pathlib import Path

    readme = (Path(__file__).parent.parent / "README.md").read_text()
    code = readme.split("from rkcompile.training import Schedule, cosine\n", 1)[1].split("```", 1)[0]
    namespace: dict = {}
    exec("import torch\nimport rkcompile\nfrom rkcompile.training import Schedule, cosine\n" + code, namespace)
    assert capsys.readouterr().out.strip() == "[(2, 'interpolate')]"
    model, schedule = namespace["model"], namespace["schedule"]
    assert model.spec.stages[0].blocks == 2 and schedule.model is model
