"""rkcompile.analysis.flops: the analysis' FLOP counter gives torch's FlopCounterMode totals, op by op and per network."""

from __future__ import annotations

import pytest
import torch
from torch.nn import functional as F
from torch.utils.flop_counter import FlopCounterMode

import rkcompile.token_modules  # noqa: F401  (registers the CPU flash-attention formula, as a build does)
from rkcompile.analysis import analyze
from rkcompile.analysis.flops import FlopCounter
from rkcompile.analysis.propagate import meta_input
from rkcompile.compiler import build


def _meta(*shape, grad=True):
    return torch.empty(*shape, device="meta", requires_grad=grad)


OPS = {  # name → a call on meta tensors, with autograd on as in the analysis
    "conv2d": lambda: F.conv2d(_meta(2, 3, 8, 8), _meta(4, 3, 3, 3), _meta(4), padding=1),
    "conv1d-strided": lambda: F.conv1d(_meta(2, 3, 9), _meta(5, 3, 3), stride=2),
    "linear": lambda: F.linear(_meta(2, 7, 6), _meta(5, 6), _meta(5)),
    "einsum": lambda: torch.einsum("bij,bjk->bik", _meta(2, 3, 4), _meta(2, 4, 5)),
    "matmul-vector": lambda: _meta(3, 4) @ _meta(4),
    "attention": lambda: F.scaled_dot_product_attention(_meta(2, 4, 5, 8), _meta(2, 4, 5, 8), _meta(2, 4, 5, 8)),
    "causal-attention": lambda: F.scaled_dot_product_attention(_meta(1, 2, 6, 4), _meta(1, 2, 6, 4),
                                                               _meta(1, 2, 6, 4), is_causal=True),
    "batch-norm": lambda: torch.batch_norm(_meta(2, 3, 4, 4), _meta(3), _meta(3), None, None, True, 0.0, 1e-5, False),
    "layer-norm": lambda: F.layer_norm(_meta(2, 5, 6), (6,), _meta(6), _meta(6)),
    "group-norm": lambda: F.group_norm(_meta(2, 4, 3, 3), 2, _meta(4), _meta(4)),
    "elementwise": lambda: torch.add(F.relu(_meta(2, 3)), _meta(2, 3), alpha=0.5),
}


@pytest.mark.parametrize("name", list(OPS))
def test_each_op_counts_what_flop_counter_mode_counts(name):
    with FlopCounterMode(display=False) as reference:
        expected = OPS[name]()
    with FlopCounter() as counter:
        out = OPS[name]()
    assert counter.total == reference.get_total_flops()
    assert out.shape == expected.shape and out.stride() == expected.stride() and out.dtype == expected.dtype
    if name in ("conv2d", "linear", "einsum", "attention"):
        assert counter.total > 0  # the ops with a formula are counted, not silently zero


def test_the_total_accumulates_and_starts_at_zero():
    counter = FlopCounter()
    assert counter.total == 0
    with counter:
        OPS["linear"]()
        once = counter.total
        OPS["linear"]()
    assert once == 2 * 7 * 5 * 6 * 2 and counter.total == 2 * once  # 2·M·N·K per matrix product


@pytest.mark.parametrize("path", ["specs/resnet14-cifar10.yaml", "specs/vit-tiny-digits.yaml",
                                  "specs/transformer-rk4-sequence.yaml", "specs/resnet1d-signals.yaml",
                                  "specs/spirals-rk4.yaml"])
def test_analysis_flops_equal_flop_counter_mode_on_a_real_forward(path):
    model = build(path)
    with FlopCounterMode(display=False) as reference, torch.no_grad():
        model(meta_input(model.spec, 2, torch.float32, device="cpu"))
    assert analyze(model, batch=2).total.flops == reference.get_total_flops() > 0
