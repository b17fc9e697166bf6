"""FLOPs of the ops that run, from torch's registered FLOP formulas, without FlopCounterMode's per-module bookkeeping.

`torch.utils.flop_counter.FlopCounterMode` also attributes FLOPs to modules (global hooks on every module
call), runs every op through a dynamo-disable wrapper (as any `TorchDispatchMode` does), and decomposes the
normalizations into Python reference ops that it then dispatches one by one. The analysis needs only the
total, so `FlopCounter` applies the same formulas (`flop_counter.flop_registry`, which
`rkcompile.token_modules` extends) in the same way: each op is first decomposed where torch can, and an op
that cannot be decomposed adds its formula's count, or zero without one. Totals are FlopCounterMode's; only
the normalizations, whose decompositions hold no op with a formula, are run whole.
"""

from __future__ import annotations

import torch
from torch.utils import flop_counter
from torch.utils._python_dispatch import TorchDispatchMode

__all__ = ["FlopCounter"]

_DEVICE = torch.ops.prim.device.default
# normalizations whose decompositions are elementwise ops and reductions only (no FLOP formula applies, so they
# count zero either way): run them whole instead of dispatching each part through this mode
_WHOLE = frozenset({torch.ops.aten.native_batch_norm, torch.ops.aten._native_batch_norm_legit,
                    torch.ops.aten.native_layer_norm, torch.ops.aten.native_group_norm})


class FlopCounter(TorchDispatchMode):
    """Count the FLOPs of every op run inside it; `total` is the running sum."""

    @classmethod
    def _should_skip_dynamo(cls) -> bool:
        # no dynamo-disable wrapper around each dispatch: nothing runs under torch.compile inside the analysis
        return False

    def __init__(self) -> None:
        super().__init__()
        self.total = 0
        self.formulas = dict(flop_counter.flop_registry)  # read on entry: registrations made before it count

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        """Decompose the op if torch can (its parts are counted), else run it and add its formula's FLOPs."""
        kwargs = kwargs or {}
        if func is not _DEVICE and func._overloadpacket not in _WHOLE:
            with self:
                out = func.decompose(*args, **kwargs)
            if out is not NotImplemented:
                return out
        out = func(*args, **kwargs)
        formula = self.formulas.get(func._overloadpacket)
        if formula is not None:
            self.total += formula(*args, **kwargs, out_val=out)
        return out
