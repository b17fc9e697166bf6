"""examples/datasets.py's MNIST-1D: regenerated offline from the templates, cached under the user's cache dir."""

from __future__ import annotations

import importlib.util
import random
import socket
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
pytest.importorskip("mnist1d")


def _load():
    spec = importlib.util.spec_from_file_location("rkcompile_test_datasets", ROOT / "examples" / "datasets.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


datasets = _load()


def _no_network(monkeypatch):
    """Every way out to the network raises: sockets, urllib and requests."""
    import urllib.request

    import requests

    def refuse(*args, **kwargs):
        raise AssertionError("MNIST-1D tried to use the network")

    monkeypatch.setattr(socket, "socket", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(urllib.request, "urlopen", refuse)
    monkeypatch.setattr(requests, "get", refuse)
    monkeypatch.setattr(requests.Session, "request", refuse)


@pytest.fixture(scope="module")
def generated(tmp_path_factory):
    """One offline regeneration into a fresh cache directory: (cache root, arrays)."""
    root = tmp_path_factory.mktemp("cache")
    with pytest.MonkeyPatch.context() as mp:
        _no_network(mp)
        mp.setenv("XDG_CACHE_HOME", str(root))
        numpy_state, python_state = np.random.get_state(), random.getstate()
        arrays = datasets.mnist1d_arrays()
        after_numpy, after_python = np.random.get_state(), random.getstate()
    assert after_python == python_state
    assert all(np.array_equal(a, b) for a, b in zip(after_numpy, numpy_state))  # global RNG state restored
    return root, arrays


def test_standard_split_is_regenerated_offline(generated):
    _, a = generated
    assert a["x"].shape == (4000, 40) and a["x_test"].shape == (1000, 40)
    assert a["y"].shape == (4000,) and a["y_test"].shape == (1000,)
    assert set(np.unique(a["y"])) == set(range(10)) and set(np.unique(a["y_test"])) == set(range(10))
    # make_dataset draws 500 samples per template and shuffles: 5,000 in all, 500 of each digit
    assert (np.bincount(np.concatenate([a["y"], a["y_test"]])) == 500).all()
    # the generator standardises the whole set to mean 0, std 1
    whole = np.concatenate([a["x"], a["x_test"]]).astype(np.float64)
    assert abs(whole.mean()) < 1e-5 and whole.std() == pytest.approx(1, abs=1e-5)
    assert np.isfinite(whole).all()


def test_arrays_are_cached_under_xdg_cache_home(generated, monkeypatch):
    root, a = generated
    files = list((root / "rkcompile").glob("mnist1d-*.npz"))
    assert len(files) == 1 and len(files[0].stem.split("-")[1]) == 16
    monkeypatch.setenv("XDG_CACHE_HOME", str(root))
    import mnist1d.data

    def regenerate(*args, **kwargs):
        raise AssertionError("regenerated although the cache holds the arrays")

    monkeypatch.setattr(mnist1d.data, "make_dataset", regenerate)
    again = datasets.mnist1d_arrays()
    assert all(np.array_equal(a[k], again[k]) for k in a)


def test_cache_dir_defaults_and_relative_xdg(monkeypatch, tmp_path):
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    assert datasets.cache_dir() == tmp_path / ".cache" / "rkcompile"
    monkeypatch.setenv("XDG_CACHE_HOME", "relative/dir")  # the XDG spec says: ignore a relative path
    assert datasets.cache_dir() == tmp_path / ".cache" / "rkcompile"
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert datasets.cache_dir() == tmp_path / "xdg" / "rkcompile"


def test_damaged_cache_is_regenerated(generated, monkeypatch, tmp_path):
    root, a = generated
    (tmp_path / "rkcompile").mkdir()
    name = next((root / "rkcompile").glob("mnist1d-*.npz")).name
    (tmp_path / "rkcompile" / name).write_bytes(b"not a zip file")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    _no_network(monkeypatch)
    again = datasets.mnist1d_arrays()
    assert all(np.array_equal(a[k], again[k]) for k in a)  # deterministic: the same arrays from the templates
    with np.load(tmp_path / "rkcompile" / name) as z:           # and the damaged file was replaced
        assert np.array_equal(z["x_test"], a["x_test"])


def test_dataset_is_signals(generated, monkeypatch):
    root, a = generated
    monkeypatch.setenv("XDG_CACHE_HOME", str(root))
    ds = datasets.load("mnist1d")
    assert ds.shape == (1, 40) and ds.is_signal and not ds.is_image and ds.classes == 10
    assert ds.describe() == "signals of 1 channel x 40 samples"
    x, y = ds.train.tensors
    assert tuple(x.shape) == (4000, 1, 40) and np.array_equal(x[:, 0].numpy(), a["x"])
    assert np.array_equal(ds.test.tensors[1].numpy(), a["y_test"])


def test_missing_package_is_a_data_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "mnist1d.data", None)
    with pytest.raises(datasets.DataError, match="pip install mnist1d"):
        datasets.mnist1d_arrays(cache=False)
