"""Property: no generated override, mutated spec text or tampered artifact produces a traceback, a hang or a huge
allocation. Memory is bounded by construction: every call runs under limits of 5M parameters (20 MB of float32
weights) and 64 MB activations, so whatever hypothesis draws, a build that passes allocates little.
"""

from __future__ import annotations

import time
from pathlib import Path

import torch
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import rkcompile
from rkcompile.cli import cli

ROOT = Path(__file__).resolve().parents[1]
SPECS = ["pendulum-odenet", "spirals-rk4", "resnet14-cifar10", "continuousnet-2-2-2"]
SMALL = ["--max-params", "5000000", "--max-activation", str(64 * 2**20), "--max-nodes", "20000"]
LIMITS = rkcompile.Limits(max_params=5_000_000, max_activation_bytes=64 * 2**20, max_nodes=20_000)
FIELDS = ["seed", "input.features", "input.channels", "input.height", "stem.channels", "stem.kernel",
          "stages.0.steps", "stages.0.evaluations", "stages.0.channels", "stages.0.features", "stages.0.module",
          "stages.0.module.hidden", "stages.0.module.kernel", "stages.0.weights", "stages.0.step.h",
          "stages.0.step.T", "stages.0.step.epsilon", "stages.0.integrator", "output.classes", "stages.1.entry"]
HUGE = st.sampled_from(["1000000000", "10**30", "1e23", "4001", "-1", "0", "true", "'4'", "1e-400", "sqrt(1e399)",
                        "sqrt(2)/1e-400", "9" * 5000, "[100000]", "[100000, 100000]", "{kind: basis, pieces: 1000000000}",
                        "!!binary aGVsbG8=", "[" * 5000 + "]" * 5000, "{kind: bottleneck}", "{kind: mlp, hidden: []}",
                        "rk4", "verner89", "{c: [0], A: [[0]], b: ['1e-45']}", "null", "", ".nan", "&a [*a]"])
VALUES = HUGE | st.integers(-(10**6), 10**12).map(str) | st.text(max_size=12).filter(lambda t: "\x00" not in t)


def run(args: list[str]) -> tuple[int, str, float]:
    start = time.perf_counter()
    result = CliRunner().invoke(cli, args)
    return result.exit_code, result.output, time.perf_counter() - start


def assert_clean(code: int, out: str, seconds: float) -> None:
    """Exit 0 (ok), 1 (a located error) or 2 (a usage error); never a traceback or an internal error."""
    assert code in (0, 1, 2), out
    assert "Traceback" not in out and "internal error" not in out, out
    if code == 1:
        assert out.startswith("error: ") and "\n" not in out.removeprefix("error: ").split("\n", 1)[0], out
    assert seconds < 30, seconds


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(spec=st.sampled_from(SPECS), sets=st.lists(st.tuples(st.sampled_from(FIELDS), VALUES), min_size=1, max_size=3),
       command=st.sampled_from(["check", "build"]))
def test_overrides_never_crash(spec: str, sets: list[tuple[str, str]], command: str):
    args = [command, str(ROOT / "specs" / f"{spec}.yaml"), *SMALL]
    for field, value in sets:
        args += ["--set", f"{field}={value}"]
    assert_clean(*run(args))


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(spec=st.sampled_from(SPECS), cut=st.integers(0, 2000), insert=VALUES)
def test_mutated_spec_text_never_crashes(tmp_path_factory, spec: str, cut: int, insert: str):
    text = (ROOT / "specs" / f"{spec}.yaml").read_text()
    cut %= len(text)
    path = tmp_path_factory.mktemp("m") / "m.yaml"
    path.write_text(text[:cut] + insert + text[cut:])
    assert_clean(*run(["check", str(path), *SMALL]))


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(field=st.sampled_from(FIELDS), value=VALUES, shape=st.sampled_from([None, (3,), (50, 3), ()]))
def test_tampered_artifacts_give_artifact_errors(tmp_path_factory, field: str, value: str, shape):
    model = rkcompile.build(ROOT / "specs" / "pendulum-odenet.yaml")
    text = (ROOT / "specs" / "pendulum-odenet.yaml").read_text() + f"\n# {field}\n"
    if field.startswith("stages.0.") and "." not in field.removeprefix("stages.0."):
        text = text.replace("    steps: 1\n", f"    steps: 1\n    {field.removeprefix('stages.0.')}: {value}\n")
    state = model.state_dict()
    if shape is not None:
        state["stage0.f.fc1.weight"] = torch.zeros(shape)
    path = tmp_path_factory.mktemp("a") / "m.pt"
    torch.save({"format": "rkcompile-model", "version": 1, "spec": text, "state_dict": state}, path)
    start = time.perf_counter()
    try:
        loaded = rkcompile.load(path, limits=LIMITS)
    except rkcompile.ArtifactError as e:
        assert "\n" not in str(e) and str(e).startswith(f"{path}: ")
    else:
        assert sum(p.numel() for p in loaded.parameters()) <= LIMITS.max_params
    assert time.perf_counter() - start < 30
