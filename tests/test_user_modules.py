"""User modules: `register_module(kind, factory, args)` — inlined by torch.fx, trained, saved and loaded."""

from __future__ import annotations

import pytest
import torch
import yaml
from click.testing import CliRunner
from pydantic import BaseModel, Field
from torch import nn

import rkcompile
from rkcompile import ArtifactError, SpecError, analyze, build, load, parse_spec, save
from rkcompile.cli import cli
from rkcompile.functions import FUNCTIONS


class SwiGlu(nn.Module):
    """c(silu(a y) * b y) (Shazeer 2020), a user-defined F for token states."""

    def __init__(self, width: int, hidden: int) -> None:
        super().__init__()
        self.a, self.b, self.c = nn.Linear(width, hidden), nn.Linear(width, hidden), nn.Linear(hidden, width)

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        return self.c(nn.functional.silu(self.a(y)) * self.b(y))


class SwiGluArgs(BaseModel):
    hidden: int = Field(8, gt=0)


class Branchy(nn.Module):
    """Python control flow on a shape: not symbolically traceable, so it stays one node."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.fc = nn.Linear(width, width)

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        return self.fc(y) if y.shape[-1] > 2 else -self.fc(y)


@pytest.fixture
def registered():
    rkcompile.register_module("swiglu", lambda width, hidden: SwiGlu(width, hidden), SwiGluArgs)
    rkcompile.register_module("branchy", lambda width: Branchy(width))
    yield
    FUNCTIONS.unregister("swiglu")
    FUNCTIONS.unregister("branchy")


def spec_text(module, integrator: str = "rk4") -> str:
    return yaml.safe_dump({"name": "user", "seed": 0, "input": {"length": 5, "features": 6},
                           "stages": [{"module": module, "integrator": integrator, "evaluations": 4}],
                           "output": {"classes": 3}})


def test_user_module_is_inlined_counts_exactly_trains_saves_and_loads(registered, tmp_path):
    counts = {}
    for integrator in ("euler", "midpoint", "rk4"):
        counts[integrator] = sum(p.numel() for p in build(parse_spec(spec_text({"kind": "swiglu", "hidden": 7},
                                                                                 integrator))).parameters())
    f = 2 * (6 * 7 + 7) + 7 * 6 + 6
    assert counts == dict.fromkeys(counts, 4 * f + 6 * 3 + 3)
    model = build(parse_spec(spec_text({"kind": "swiglu", "hidden": 7})))
    assert "stage0_block0_k1_swiglu_mul" in model.code  # traced: each operation its own node
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    x, y = torch.randn(4, 5, 6), torch.randint(0, 3, (4,))
    before = model.get_submodule("stage0.block0.eval1.swiglu.a").weight.detach().clone()
    loss = nn.functional.cross_entropy(model(x), y)
    loss.backward()
    optimizer.step()
    assert not torch.equal(before, model.get_submodule("stage0.block0.eval1.swiglu.a").weight)
    save(model, tmp_path / "m.pt")
    torch.testing.assert_close(load(tmp_path / "m.pt")(x), model(x), rtol=0, atol=0)


def test_loading_without_the_registration_names_the_kind(registered, tmp_path):
    save(build(parse_spec(spec_text({"kind": "swiglu"}))), tmp_path / "m.pt")
    FUNCTIONS.unregister("swiglu")
    try:
        with pytest.raises(ArtifactError) as info:
            load(tmp_path / "m.pt")
        assert "\n" not in str(info.value)
        assert "the saved spec no longer validates" in str(info.value)
        assert "stages[0].module.kind: unknown kind 'swiglu'" in str(info.value)
        result = CliRunner().invoke(cli, ["analyze", str(tmp_path / "m.pt")])
        assert result.exit_code == 1 and "unknown kind 'swiglu'" in result.output + (result.stderr or "")
        assert "Traceback" not in result.output
    finally:
        rkcompile.register_module("swiglu", lambda width, hidden: SwiGlu(width, hidden), SwiGluArgs)


def test_user_module_fields_are_validated_by_its_args_model(registered):
    with pytest.raises(SpecError, match=r"u.yaml:\d+:\d+: stages\[0\].module.hidden: "):
        parse_spec(spec_text({"kind": "swiglu", "hidden": 0}), file="u.yaml")
    with pytest.raises(SpecError, match=r"stages\[0\].module.width: unknown field 'width'"):
        parse_spec(spec_text({"kind": "branchy", "width": 3}), file="u.yaml")


def test_untraceable_module_stays_one_node_and_the_analysis_says_so(registered):
    model = build(parse_spec(spec_text(["swiglu", "branchy"], "midpoint")))
    assert "self.stage0.block0.eval2.branchy(" in model.code
    report = analyze(model, batch=2)
    assert report.hidden == ("stage0.block0.eval2.branchy", "stage0.block1.eval2.branchy")
    assert "note: 2 untraceable module call(s) ran as one node each, so the temporaries inside them are hidden" \
        in report.table()


def test_register_module_rejects_bad_arguments():
    with pytest.raises(TypeError, match="factory must be callable"):
        rkcompile.register_module("nothing", 3)
    with pytest.raises(TypeError, match="args must be a Pydantic model class"):
        rkcompile.register_module("nothing", lambda width: nn.Identity(), dict)
    assert "nothing" not in FUNCTIONS
