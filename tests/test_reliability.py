"""Hostile inputs through the CLI: no file lost, bounded work, one located line and the right exit code for each.

Each class of issue 9 has its probes here: files (the input never replaced, a failed write harmless), paths,
limits (refused before anything is allocated), numbers, tracebacks (internal error = exit 3), artifacts whose
spec was edited, save's self-check, the Euler baseline of the ratios and the torch-free start.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from fractions import Fraction
from pathlib import Path

import pytest
import torch
import yaml
from click.testing import CliRunner

import rkcompile
from rkcompile import ArtifactError, Spec, build, save
from rkcompile.analysis import euler_manifestation
from rkcompile.cli import cli
from rkcompile.tableau import Tableau

ROOT = Path(__file__).resolve().parents[1]


def _without_modeline(text: str) -> str:
    """The spec text without its yaml-language-server first line, so the line numbers below stay the spec's own."""
    return text.split("\n", 1)[1] if text.startswith("# yaml-language-server") else text


PENDULUM = _without_modeline((ROOT / "specs" / "pendulum-odenet.yaml").read_text())
RESNET = _without_modeline((ROOT / "specs" / "resnet14-cifar10.yaml").read_text())
NODES = "raise it with --max-nodes N (Python: limits=Limits(max_nodes=N))"
PARAMS = "raise it with --max-params N (Python: limits=Limits(max_params=N))"


@pytest.fixture
def work(tmp_path: Path, monkeypatch) -> Path:
    """A folder holding net.yaml (pendulum, mode 600) and img.yaml (resnet14), as the current directory."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "net.yaml").write_text(PENDULUM)
    os.chmod(tmp_path / "net.yaml", 0o600)
    (tmp_path / "img.yaml").write_text(RESNET)
    return tmp_path


def run(*args: str):
    """(exit code, output, seconds) of one in-process CLI call."""
    start = time.perf_counter()
    result = CliRunner().invoke(cli, list(args))
    return result.exit_code, result.output, time.perf_counter() - start


def untouched(path: Path, text: str, mode: int = 0o600) -> bool:
    return path.read_text() == text and os.stat(path).st_mode & 0o777 == mode


# ---------------------------------------------------------------- 1. files are never lost
@pytest.mark.parametrize("args", [
    ["build", "net.yaml", "-o", "net.yaml"],
    ["build", "net.yaml", "--code", "net.yaml"],
    ["build", "net.yaml", "--code", "link.yaml"],
    ["build", "net.yaml", "-o", "hard.yaml"],
    ["draw", "net.yaml", "-o", "link.yaml", "--format", "dot"],
])
def test_the_input_is_never_replaced(work: Path, args: list[str]):
    (work / "link.yaml").symlink_to(work / "net.yaml")
    os.link(work / "net.yaml", work / "hard.yaml")
    code, out, seconds = run(*args)
    target = args[-1] if args[-2] != "--format" else args[-3]
    assert code == 1 and seconds < 10
    expected = f"cannot write {target}: it is the input file net.yaml; write the result to another file"
    if args[0] == "draw":  # draw's own wording, checked before anything is built
        expected = "refusing to overwrite the input file net.yaml"
    assert out == f"error: {expected}\n"
    assert untouched(work / "net.yaml", PENDULUM)


def test_draw_into_proc_is_one_line(work: Path):
    code, out, _ = run("draw", "net.yaml", "-o", "/proc/x.svg")
    assert code == 1 and out.count("\n") == 1 and out.startswith("error: cannot write /proc/x.svg: ")


def test_saving_over_a_file_keeps_its_mode(work: Path):
    (work / "model.pt").write_bytes(b"old")
    os.chmod(work / "model.pt", 0o600)
    code, out, _ = run("build", "net.yaml", "-o", "model.pt", "--code", "model.py")
    assert code == 0, out
    assert os.stat(work / "model.pt").st_mode & 0o777 == 0o600
    assert rkcompile.load(work / "model.pt").spec.name == "pendulum-odenet"
    assert sorted(p.name for p in work.iterdir()) == ["img.yaml", "model.pt", "model.py", "net.yaml"]


# ---------------------------------------------------------------- 2. paths are paths
def test_a_colon_in_a_file_name_is_a_path(work: Path):
    (work / "net:v2.yaml").write_text(PENDULUM)
    code, out, _ = run("check", "net:v2.yaml")
    assert code == 0 and out.startswith("net:v2.yaml: ok (pendulum-odenet)\n")


def test_yaml_text_is_not_a_path():
    with pytest.raises(rkcompile.SpecError, match=r"no such file \(a path, not YAML text: parse text with "):
        rkcompile.load_spec(PENDULUM)
    assert rkcompile.parse_spec(PENDULUM, file="p.yaml").name == "pendulum-odenet"


@pytest.mark.parametrize(("make", "message"), [
    (lambda d: os.mkfifo(d / "fifo.yaml") or "fifo.yaml", "error: fifo.yaml: is a FIFO, expected a regular YAML file"),
    (lambda d: "/dev/zero", "error: /dev/zero: is a character device, expected a regular YAML file"),
])
def test_special_files_are_refused_without_reading(work: Path, make, message: str):
    code, out, seconds = run("check", make(work))
    assert (code, out) == (1, f"{message}\n1 of 1 spec invalid\n") and seconds < 10


# ---------------------------------------------------------------- 3. limits before allocation
LIMITED = [
    ("net.yaml", ["stages.0.steps=null", "stages.0.evaluations=1000000000"],
     f"--set stages.0.evaluations=1000000000: stages[0].evaluations: the network would have at least 3,000,000,000 graph nodes, above the limit "
     f"of 200,000; {NODES}"),
    ("net.yaml", ["stages.0.steps=100000000"],
     f"--set stages.0.steps=100000000: stages[0].steps: the network would have at least 1,200,000,000 graph nodes, above the limit of "
     f"200,000; {NODES}"),
    ("net.yaml", ["stages.0.weights={kind: basis, pieces: 1000000000}"],
     f"--set stages.0.weights={{kind: basis, pieces: 1000000000}}: stages[0].weights.pieces: the network would have at least 252,000,000,000 parameters, above the "
     f"limit of 2,000,000,000; {PARAMS}"),
    ("img.yaml", ["stages.2.channels=10000000"],
     f"--set stages.2.channels=10000000: stages[2].channels: the network would have at least 2,700,003,060,042,330 parameters, above the "
     f"limit of 2,000,000,000; {PARAMS}"),
    ("img.yaml", ["stages.0.module.kernel=4001"],
     f"img.yaml:10:5: stages[0].module: the network would have at least 16,392,356,314 parameters, above the limit of "
     f"2,000,000,000; {PARAMS}"),
    ("net.yaml", ["stages.0.module.hidden=[100000, 100000]"],
     f"net.yaml:8:5: stages[0].module: the network would have at least 10,000,600,002 parameters, above the limit of "
     f"2,000,000,000; {PARAMS}"),
    ("net.yaml", ["output={classes: 1000000000}"],
     f"--set output={{classes: 1000000000}}: output.classes: the network would have at least 3,000,000,252 parameters, above the limit of "
     f"2,000,000,000; {PARAMS}"),
    ("img.yaml", ["input.height=100000", "input.width=100000"],
     "img.yaml:7:1: stem: one activation would take at least 640,000,000,000 bytes at batch 1, above the limit of "
     "4,294,967,296; raise it with --max-activation BYTES (Python: limits=Limits(max_activation_bytes=N))"),
]


@pytest.mark.parametrize("command", ["check", "build", "analyze", "draw"])
@pytest.mark.parametrize(("spec", "sets", "message"), LIMITED, ids=[" ".join(s) for _, s, _ in LIMITED])
def test_huge_networks_are_refused_in_milliseconds(work: Path, command: str, spec: str, sets: list[str], message: str):
    args = [command, spec, *(a for s in sets for a in ("--set", s))] + (["-o", "x.dot"] if command == "draw" else [])
    code, out, seconds = run(*args)
    tail = "1 of 1 spec invalid\n" if command == "check" else ""
    assert (code, out) == (1, f"error: {message}\n{tail}")
    assert seconds < 10 and not (work / "x.dot").exists()


def test_limits_can_be_raised_and_lowered(work: Path):
    assert run("check", "net.yaml", "--max-params", "100")[:2] == (1, (
        "error: net.yaml:8:5: stages[0].module: the network would have at least 252 parameters, above the limit of "
        f"100; {PARAMS}\n1 of 1 spec invalid\n"))
    code, out, _ = run("check", "net.yaml", "--set", "stages.0.steps=20000", "--max-nodes", "1000000")
    assert code == 0, out
    with pytest.raises(rkcompile.CompileError, match="above the limit of 3; raise it with --max-nodes"):
        build(work / "net.yaml", limits=rkcompile.Limits(max_nodes=3))


def test_the_exact_count_decides_near_a_limit(work: Path):
    """252 parameters exactly: a lower bound near the limit is settled by a meta-device build, in check too."""
    assert run("check", "net.yaml", "--max-params", "252")[0] == 0
    code, out, _ = run("build", "net.yaml", "--max-params", "251")
    assert code == 1 and "at least 252 parameters, above the limit of 251" in out


@pytest.mark.parametrize(("args", "message"), [
    (["refine", "m.pt", "--factor", "1000000", "-o", "r.pt"],
     "m.pt: stages[0].steps: the network would have at least 12,000,000 graph nodes, above the limit of 200,000; "),
    (["remanifest", "m.pt", "--steps", "100000000", "-o", "r.pt"],
     "m.pt: stages[0].steps: the network would have at least 1,200,000,000 graph nodes, above the limit of 200,000; "),
])
def test_transforms_are_limited(work: Path, args: list[str], message: str):
    save(build(work / "net.yaml"), work / "m.pt")
    code, out, seconds = run(*args)
    assert code == 1 and seconds < 10 and message.split(": ", 1)[1] in out and "Traceback" not in out
    assert not (work / "r.pt").exists()


def test_edited_artifact_spec_is_refused_before_building(work: Path):
    model = build(work / "net.yaml")
    payload = {"format": "rkcompile-model", "version": 1, "state_dict": model.state_dict(),
               "spec": PENDULUM.replace("steps: 1", "steps: 100000000")}
    torch.save(payload, work / "edited.pt")
    for command in ("analyze", "draw"):
        code, out, seconds = run(command, "edited.pt", *(["-o", "x.svg"] if command == "draw" else []))
        assert code == 1 and seconds < 10
        assert out.startswith("error: edited.pt: the saved spec no longer validates: edited.pt[spec]:")
        assert "graph nodes, above the limit of 200,000" in out


def test_artifact_state_dict_is_checked_on_the_meta_network(work: Path):
    model = build(work / "net.yaml")
    wide = PENDULUM.replace("hidden: [50]", "hidden: [51]")
    torch.save({"format": "rkcompile-model", "version": 1, "state_dict": model.state_dict(), "spec": wide},
               work / "wide.pt")
    with pytest.raises(ArtifactError, match=r"shape mismatch at 'stage0.f.fc1.weight': found \(50, 2\), the spec "
                                            r"needs \(51, 2\)"):
        rkcompile.load(work / "wide.pt")


def test_measure_is_refused_when_too_big(work: Path):
    code, out, seconds = run("analyze", "img.yaml", "--measure", "--batch", "1000000")
    assert code == 1 and seconds < 10
    assert out == ("error: a measured forward + backward at batch 1000000 needs at least 65,536,000,000 bytes, above "
                   "the limit of 8,589,934,592; lower --batch or raise it with --max-measure BYTES (Python: "
                   "limits=Limits(max_measure_bytes=N))\n")


def test_exact_order_check_has_a_work_bound():
    """A large tableau of big-denominator fractions: the float check decides, and says so."""
    s = 40
    A = tuple(tuple(Fraction(1, 1_000_003 + i * s + j) for j in range(i)) + (Fraction(0),) * (s - i) for i in range(s))
    c = tuple(sum(row, Fraction(0)) for row in A)
    start = time.perf_counter()
    t = Tableau("wide", c, A, (Fraction(1, s),) * s)
    assert t.order == 1 and not t.exact_order_check
    assert time.perf_counter() - start < 10
    assert t.describe().splitlines()[0].startswith(
        "wide: 40 stages, order 1 (float64 check, relative tolerance 1e-10: the exact check is too large)")


# ---------------------------------------------------------------- 4. numbers
NUMBERS = [
    (["stages.0.step.h=1e-400"], "--set stages.0.step.h=1e-400: stages[0].step.h: coefficient '1e-400' is zero or subnormal in "
                                 "float32 (nonzero magnitudes must lie in 1.175e-38 ... 3.403e+38)"),
    (["stages.0.step.h=sqrt(1e399)"], "--set stages.0.step.h=sqrt(1e399): stages[0].step.h: cannot parse coefficient 'sqrt(1e399)': "
                                      "number too large at position 6"),
    (["stages.0.step.h=sqrt(2)/1e-400"], "--set stages.0.step.h=sqrt(2)/1e-400: stages[0].step.h: cannot parse "
                                         "coefficient 'sqrt(2)/1e-400': number too small at position 8"),
    (["seed=" + "7" * 4400], "--set:1:1: seed: number with more than 100 digits is not allowed"),
    (["seed=1000000000000000000000000000000"], "--set seed=1000000000000000000000000000000: seed: must be at most 9223372036854775807, found "
                                               "1000000000000000000000000000000"),
    (["stages.0.module.hidden=" + "[" * 60000 + "]" * 60000], "--set: 'stages.0.module.hidden': value nested deeper "
                                                               "than 64 levels"),
    (["stages.0.module.hidden=!!binary aGVsbG8="], "--set:1:1: 'stages.0.module.hidden': unsupported YAML value of "
                                                   "type bytes"),
]


@pytest.mark.parametrize(("sets", "message"), NUMBERS, ids=[s[0][:30] for s, _ in NUMBERS])
def test_numbers_are_located_errors(work: Path, sets: list[str], message: str):
    code, out, seconds = run("check", "net.yaml", *(a for s in sets for a in ("--set", s)))
    assert (code, out) == (1, f"error: {message}\n1 of 1 spec invalid\n") and seconds < 10


def test_huge_integer_in_a_file(work: Path):
    (work / "big.yaml").write_text(PENDULUM.replace("seed: 0", "seed: " + "9" * 5000))
    code, out, seconds = run("check", "big.yaml")
    assert (code, out) == (1, "error: big.yaml:4:1: seed: number with more than 100 digits is not allowed\n"
                              "1 of 1 spec invalid\n") and seconds < 10


def test_batch_out_of_range_is_a_usage_error(work: Path):
    code, out, _ = run("analyze", "net.yaml", "--batch", "100000000000000000000000")
    assert code == 2 and out.splitlines()[-1] == (
        "Error: Invalid value for '--batch': 100000000000000000000000 is not in the range 1<=x<=2147483647.")


# ---------------------------------------------------------------- 5. no traceback, ever
def test_an_unexpected_exception_is_one_line_and_exit_3(work: Path, monkeypatch):
    import rkcompile.summary

    def broken(model):
        raise ValueError("boom\nsecond line")

    monkeypatch.setattr(rkcompile.summary, "units", broken)
    code, out, _ = run("build", "net.yaml")
    assert code == 3 and out.splitlines()[-1] == "internal error: ValueError: boom second line (run with --debug)"
    code, out, _ = run("build", "net.yaml", "--debug")  # --debug after the subcommand
    assert code == 3 and "Traceback (most recent call last)" in out and "raise ValueError" in out


def test_debug_after_the_subcommand_shows_the_traceback(work: Path):
    code, out, _ = run("check", "fifo.yaml", "--debug")
    assert code == 1 and "Traceback" in out and out.splitlines()[-2].startswith("error: fifo.yaml: no such file")


# ---------------------------------------------------------------- 6. save checks that its output loads
def test_a_model_validate_spec_saves_and_loads_back(work: Path):
    """A Spec made by model_validate has no YAML source: its dump holds only what was set, so it loads back."""
    model = build(Spec.model_validate(yaml.safe_load(PENDULUM)))
    save(model, "m.pt")
    x = torch.randn(3, 2)
    assert torch.equal(rkcompile.load("m.pt")(x), model(x))


def test_save_refuses_a_spec_that_would_not_load_back(work: Path):
    model = build(work / "net.yaml")
    model.spec._source.data["stages"][0]["steps"] = 0  # the text save would write no longer validates
    (work / "m.pt").write_bytes(b"previous")
    with pytest.raises(ArtifactError, match=r"^m\.pt: cannot save: the spec would not load back: m\.pt\[spec\]:\d+:\d+: "
                                            r"stages\[0\]\.steps: "):
        save(model, "m.pt")
    assert (work / "m.pt").read_bytes() == b"previous"


def test_save_refuses_weights_that_do_not_fit_the_spec(work: Path):
    model = build(work / "net.yaml")
    model.spec._source.data["stages"][0]["module"]["hidden"] = [7]
    with pytest.raises(ArtifactError, match=r"^m\.pt: cannot save: the weights do not fit the saved spec: shape "
                                            r"mismatch at 'stage0.f.fc1.weight'"):
        save(model, "m.pt")
    assert not (work / "m.pt").exists()


# ---------------------------------------------------------------- 7. the Euler baseline
def test_euler_ratios_compare_equal_evaluations(work: Path):
    spec = rkcompile.load_spec(ROOT / "specs" / "continuousnet-2-2-2.yaml")  # steps: 2 of rk4 per stage
    euler = euler_manifestation(spec)
    assert [s.total_evaluations for s in euler.spec.stages] == [s.total_evaluations for s in spec.stages] == [8, 8, 8]
    assert [s.integrator for s in euler.spec.stages] == ["euler"] * 3
    report = rkcompile.analyze(ROOT / "specs" / "continuousnet-2-2-2.yaml")
    assert "forward Euler at equal evaluations of F per stage" in report.table().splitlines()[1]


# ---------------------------------------------------------------- 8. a torch-free start
def test_import_check_and_schema_do_not_import_torch():
    script = ("import sys, time, resource\n"
              "import rkcompile\n"
              "assert 'torch' not in sys.modules\n"
              "from rkcompile.cli import cli\n"
              "for args in (['check', 'specs/ho-resnet58-rk4.yaml'], ['schema']):\n"
              "    try:\n"
              "        cli(args, standalone_mode=False)\n"
              "    except SystemExit:\n"
              "        pass\n"
              "    assert 'torch' not in sys.modules, args\n"
              "r = resource.getrusage(resource.RUSAGE_SELF)\n"
              "print('cpu', r.ru_utime + r.ru_stime)\n")
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=60,
                          env=dict(os.environ, PYTHONPATH=str(ROOT)))
    assert done.returncode == 0, done.stderr
    assert float(done.stdout.split()[-1]) < 1.5  # CPU seconds (wall time depends on the machine's load)


def test_draw_choices_match_the_renderer():
    """cli_draw keeps its own copy of the levels and formats so that `check` need not import torch."""
    from rkcompile import cli_draw, render

    names = ("LEVELS", "FORMATS", "RANKDIRS", "COLOR_BY", "TABLEAU_VIEWS")
    assert [getattr(cli_draw, n) for n in names] == [getattr(render, n) for n in names]
