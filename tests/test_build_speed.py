"""What makes builds and analyses fast keeps them correct: the paused collector, lazy code on meta, NodeMeta.but."""

from __future__ import annotations

import dataclasses
import gc
import pickle

import pytest
import torch
from torch import fx

import rkcompile
from rkcompile.collector import collector_paused
from rkcompile.graphmeta import NodeMeta, Part, Role

SPEC = "specs/spirals-rk4.yaml"


def test_collector_paused_restores_the_previous_state():
    assert gc.isenabled()
    with collector_paused():
        assert not gc.isenabled()
        with collector_paused():  # nested: the inner exit must not turn it back on
            assert not gc.isenabled()
        assert not gc.isenabled()
    assert gc.isenabled()
    with pytest.raises(ValueError), collector_paused():
        raise ValueError("boom")
    assert gc.isenabled()
    gc.disable()
    try:
        with collector_paused():
            pass
        assert not gc.isenabled()  # a caller that had it off keeps it off
    finally:
        gc.enable()


def test_build_and_analyze_leave_the_collector_on():
    rkcompile.analyze(rkcompile.build(SPEC))
    assert gc.isenabled()


def test_a_meta_build_generates_its_code_on_first_use_and_runs():
    meta = rkcompile.build(SPEC, device="meta")
    plain = rkcompile.build(SPEC)
    assert meta.code == plain.code  # the same generated forward, once asked for
    x = torch.empty(3, 2, device="meta")
    assert meta(x).shape == plain(torch.zeros(3, 2)).shape == (3, 2)


def test_a_weighted_build_is_a_plain_graph_module():
    model = rkcompile.build(SPEC)
    assert type(model).__mro__[1] is fx.GraphModule  # fx's per-instance class over GraphModule, not the lazy one
    loaded = pickle.loads(pickle.dumps(model))
    x = torch.randn(4, 2)
    torch.testing.assert_close(loaded(x), model(x), rtol=0, atol=0)


def test_meta_and_weighted_builds_analyse_the_same():
    a = rkcompile.analyze(rkcompile.build(SPEC, device="meta"), batch=3)
    b = rkcompile.analyze(rkcompile.build(SPEC), batch=3)
    assert a.table() == b.table()


def test_but_is_dataclasses_replace():
    meta = NodeMeta(Role.EVAL, stage=1, block=2, evaluation=3, part=Part.F)
    assert meta.unit == "stage1.block2"
    for changes in ({"block": 5}, {"stage": 0, "entry": True, "block": None}, {}, {"role": Role.HEAD}):
        copy = meta.but(**changes)
        expected = dataclasses.replace(meta, **changes)
        assert copy == expected and hash(copy) == hash(expected) and copy.unit == expected.unit
        assert pickle.loads(pickle.dumps(copy)) == expected
    assert meta.unit == "stage1.block2"
    with pytest.raises(TypeError, match="no field 'blocks'"):
        meta.but(blocks=3)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16, torch.float16])
@pytest.mark.parametrize("shape,layout,affine", [((2, 3, 4, 4), "contiguous", True), ((2, 3, 4, 4), "channels_last", True),
                                                 ((1, 5), "contiguous", True), ((2, 4, 7), "contiguous", False)])
def test_meta_batch_norm_records_what_torch_batch_norm_does(dtype, shape, layout, affine):
    from rkcompile.analysis.propagate import _MetaBatchNorm

    def run(fn):
        x = torch.empty(shape, dtype=dtype, device="meta")
        if layout == "channels_last":
            x = x.to(memory_format=torch.channels_last)
        x.requires_grad_()
        w = torch.empty(shape[1], dtype=dtype, device="meta", requires_grad=True) if affine else None
        b = torch.empty(shape[1], dtype=dtype, device="meta", requires_grad=True) if affine else None
        packed = []

        def pack(t):
            key = t.untyped_storage()._cdata
            packed.append((tuple(t.shape), t.stride(), t.dtype, t.untyped_storage().nbytes(),
                           key == x.untyped_storage()._cdata, w is not None and key == w.untyped_storage()._cdata))
            return t

        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            out = fn(x, w, b)
        return (tuple(out.shape), out.stride(), out.dtype, out.requires_grad), packed

    reference = run(lambda x, w, b: torch.batch_norm(x, w, b, None, None, True, 0.0, 1e-5, False))
    assert run(_MetaBatchNorm.apply) == reference
