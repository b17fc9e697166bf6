"""Saved models: save → load round trips exactly, and every bad file gives one ArtifactError line."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import pytest
import torch
import yaml
from torch import nn

from rkcompile import artifact
from rkcompile.artifact import FORMAT, VERSION, load, save, state_dict_mismatch
from rkcompile.compiler import build
from rkcompile.errors import ArtifactError

SPECS = Path(__file__).parent.parent / "specs"
SMALL = ["pendulum-odenet", "spirals-rk4", "resnet14-cifar10", "continuousnet-2-2-2"]


def example_input(model: nn.Module, batch: int = 4) -> torch.Tensor:
    """A seeded input of the shape the model's spec declares."""
    i = model.spec.input
    g = torch.Generator().manual_seed(0)
    shape = (batch, i.channels, i.height, i.width) if i.is_image else (batch, i.features)
    return torch.randn(*shape, generator=g)


def trained_like(name: str) -> nn.Module:
    """A model whose parameters and BN statistics are no longer the initial ones (so a round trip must carry them)."""
    model = build(SPECS / f"{name}.yaml")
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.01 * torch.randn_like(p))
        model.train()
        model(example_input(model))  # updates BN running statistics
    return model.eval()


def error(path, match: str) -> str:
    """Load `path`, expect an ArtifactError containing `match`, and return its (one-line) message."""
    with pytest.raises(ArtifactError) as info:
        load(path)
    message = str(info.value)
    assert match in message, message
    assert "\n" not in message
    return message


def write(path: Path, payload: object) -> Path:
    torch.save(payload, path)
    return path


@pytest.fixture(scope="module")
def saved(tmp_path_factory) -> tuple[nn.Module, Path]:
    model = trained_like("resnet14-cifar10")
    return model, save(model, tmp_path_factory.mktemp("saved") / "model.pt")


# ---------------------------------------------------------------- round trips
@pytest.mark.parametrize("name", SMALL)
def test_round_trip_gives_identical_state_and_outputs(name: str, tmp_path: Path):
    model = trained_like(name)
    loaded = load(save(model, tmp_path / "m.pt")).eval()
    want, got = model.state_dict(), loaded.state_dict()
    assert list(got) == list(want)
    assert all(torch.equal(got[k], want[k]) for k in want)
    x = example_input(model)
    with torch.no_grad():
        assert torch.equal(loaded(x), model(x))
    assert loaded.spec.data == model.spec.data
    assert loaded.code == model.code


def test_file_is_the_documented_plain_dict(saved):
    model, path = saved
    payload = torch.load(path, weights_only=True)
    assert list(payload) == ["format", "version", "spec", "state_dict"]
    assert (payload["format"], payload["version"]) == (FORMAT, VERSION) == ("rkcompile-model", 1)
    assert payload["spec"] == yaml.safe_dump(model.spec.data, sort_keys=False)
    assert yaml.safe_load(payload["spec"])["name"] == "resnet14-cifar10"


def test_overrides_travel_with_the_model(tmp_path: Path):
    model = build(SPECS / "spirals-rk4.yaml", stages__0__integrator="euler")
    loaded = load(save(model, tmp_path / "m.pt"))
    assert loaded.spec.stages[0].integrator == "euler"
    assert loaded.spec.stages[0].blocks == 20


# ---------------------------------------------------------------- safety
class _Touch:
    """A pickle payload that runs a shell command when unpickled (never when loaded by rkcompile)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch '{self.marker}'",))


def test_malicious_pickle_is_refused_without_running(tmp_path: Path):
    marker = tmp_path / "pwned"
    zipped = write(tmp_path / "zip.pt", {"format": FORMAT, "version": VERSION, "spec": _Touch(marker)})
    legacy = tmp_path / "legacy.pt"
    legacy.write_bytes(pickle.dumps(_Touch(marker), protocol=2))
    framed = tmp_path / "framed.pt"
    framed.write_bytes(pickle.dumps(_Touch(marker), protocol=4))
    message = error(zipped, "refused to load: the file holds objects other than tensors and plain data (")
    assert "posix.system" in message or "nt.system" in message
    assert "system" in error(legacy, "refused to load: the file holds objects other than tensors")
    error(framed, "the safe unpickler stopped at 'Unsupported operand 149'")  # protocol 4 FRAME: refused earlier
    assert not marker.exists()
    # positive control: the same bytes do run under plain pickle, so the marker test is not vacuous
    pickle.loads(legacy.read_bytes())
    assert marker.exists()


# ---------------------------------------------------------------- unreadable files
def test_missing_file(tmp_path: Path):
    assert error(tmp_path / "nope.pt", "no such file") == f"{tmp_path / 'nope.pt'}: no such file"


def test_directory(tmp_path: Path):
    error(tmp_path, "is a directory")


def test_empty_file(tmp_path: Path):
    (tmp_path / "e.pt").write_bytes(b"")
    error(tmp_path / "e.pt", "not a torch file: empty or truncated")


def test_text_file(tmp_path: Path):
    (tmp_path / "t.pt").write_text("name: resnet\nstages: []\n")
    error(tmp_path / "t.pt", "not a torch file, or truncated or corrupted: the safe unpickler stopped at "
          "'Unsupported operand 110'")  # 110 is 'n', the first byte


def test_truncated_file(saved, tmp_path: Path):
    data = saved[1].read_bytes()
    (tmp_path / "t.pt").write_bytes(data[: len(data) // 2])
    error(tmp_path / "t.pt", "truncated or corrupted: PytorchStreamReader failed reading zip archive")


def test_garbage_file(tmp_path: Path):
    (tmp_path / "g.pt").write_bytes(b"hello world")  # as a legacy pickle: 'h' = BINGET of memo entry 'e' = 101
    error(tmp_path / "g.pt", "not a torch file, or truncated or corrupted: KeyError: 101")


def test_corrupted_file(saved, tmp_path: Path):
    data = bytearray(saved[1].read_bytes())
    data[-30:] = bytes(b ^ 0xFF for b in data[-30:])  # the zip's end-of-central-directory record
    (tmp_path / "c.pt").write_bytes(bytes(data))
    error(tmp_path / "c.pt", "truncated or corrupted")


# ---------------------------------------------------------------- foreign torch files
def test_plain_state_dict(saved, tmp_path: Path):
    n = len(saved[0].state_dict())
    error(write(tmp_path / "sd.pt", saved[0].state_dict()),
          f"not an rkcompile model: found a plain state_dict of {n} tensors, expected a dict with format "
          "'rkcompile-model'")


def test_tensor(tmp_path: Path):
    error(write(tmp_path / "t.pt", torch.ones(3)), "not an rkcompile model: found a tensor of shape (3,)")


def test_other_format(tmp_path: Path):
    error(write(tmp_path / "o.pt", {"format": "other", "version": 1}), "found a dict with format 'other'")


def test_wrong_version(saved, tmp_path: Path):
    payload = torch.load(saved[1], weights_only=True)
    payload["version"] = 2
    error(write(tmp_path / "v.pt", payload), "unsupported rkcompile model version 2; this rkcompile reads version 1")


# ---------------------------------------------------------------- spec and state_dict checks
def resaved(saved, tmp_path: Path, **changes) -> Path:
    """The saved model with some entries of its payload replaced."""
    payload = torch.load(saved[1], weights_only=True)
    payload.update(changes)
    return write(tmp_path / "changed.pt", payload)


def test_spec_missing(saved, tmp_path: Path):
    error(resaved(saved, tmp_path, spec=None), "the 'spec' entry is nothing, expected the spec's YAML text")


def test_spec_no_longer_validates(saved, tmp_path: Path):
    data = yaml.safe_load(yaml.safe_dump(saved[0].spec.data))
    data["stages"][0]["integrator"] = "rk5"
    path = resaved(saved, tmp_path, spec=yaml.safe_dump(data, sort_keys=False))
    message = error(path, "the saved spec no longer validates: ")
    assert "stages[0].integrator: unknown tableau 'rk5'" in message
    assert f"{path}[spec]:" in message


def test_spec_that_is_a_bare_word_is_not_opened_as_a_path(saved, tmp_path: Path):
    error(resaved(saved, tmp_path, spec=str(saved[1])), "the saved spec no longer validates")


def test_missing_key(saved, tmp_path: Path):
    state = dict(saved[0].state_dict())
    del state["head.fc.bias"]
    error(resaved(saved, tmp_path, state_dict=state),
          "the state_dict does not fit the spec 'resnet14-cifar10': missing key 'head.fc.bias'")


def test_unexpected_key(saved, tmp_path: Path):
    state = dict(saved[0].state_dict(), **{"stage3.block0.eval1.conv1.weight": torch.ones(1)})
    error(resaved(saved, tmp_path, state_dict=state), "unexpected key 'stage3.block0.eval1.conv1.weight'")


def test_shape_mismatch(saved, tmp_path: Path):
    state = dict(saved[0].state_dict(), **{"head.fc.weight": torch.zeros(3, 3)})
    error(resaved(saved, tmp_path, state_dict=state),
          "shape mismatch at 'head.fc.weight': found (3, 3), the spec needs (10, 64)")


def test_state_dict_not_a_mapping(saved, tmp_path: Path):
    error(resaved(saved, tmp_path, state_dict=[1, 2]), "expected a mapping of parameter names to tensors, found a list")


def test_mismatch_counts_the_rest():
    model = build(SPECS / "pendulum-odenet.yaml")
    assert state_dict_mismatch(model, {}) == "missing key 'stage0.f.fc1.weight' (and 3 more)"
    assert state_dict_mismatch(model, dict(model.state_dict(), **{"stage0.f.fc1.weight": 1})) == (
        "'stage0.f.fc1.weight' is an int, expected a tensor")
    assert state_dict_mismatch(model, model.state_dict()) is None


# ---------------------------------------------------------------- saving
def test_failed_save_leaves_existing_file_intact(saved, tmp_path: Path, monkeypatch):
    path = tmp_path / "model.pt"
    path.write_bytes(saved[1].read_bytes())
    before = path.read_bytes()

    def full_disk(obj, f):
        f.write(b"PK\x03\x04 half a file")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(artifact.torch, "save", full_disk)
    with pytest.raises(ArtifactError, match=r"model\.pt: cannot save: \[Errno 28\] No space left on device$"):
        save(build(SPECS / "pendulum-odenet.yaml"), path)
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.pt"]  # no temp file left behind
    assert load(path).spec.name == "resnet14-cifar10"


def test_save_needs_an_rkcompile_model(tmp_path: Path):
    with pytest.raises(ArtifactError, match="the model has no rkcompile spec"):
        save(nn.Linear(2, 2), tmp_path / "m.pt")
    assert not (tmp_path / "m.pt").exists()


def test_save_into_missing_folder(tmp_path: Path):
    with pytest.raises(ArtifactError, match=r"cannot save: \[Errno 2\] No such file or directory"):
        save(build(SPECS / "pendulum-odenet.yaml"), tmp_path / "no" / "m.pt")
