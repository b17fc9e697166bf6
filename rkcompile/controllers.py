"""Step-size controllers of Yang et al. 2020 (TSC_2fc, TSC_LSTM): per-channel steps from the projected weights of F.

Each conv weight w in R^{C2 x C1 x k1 x k2} of the block's F is averaged over its input channels and
flattened to w_bar in R^{k1 k2 C2} (a linear weight gives R^{C2}); the block's projections are concatenated
(Yang et al. 2020, "Implementations"). Then x = relu(W_in w_bar + b_in) in R^{C/r} and

    2-FC:  dt = sigmoid(W_out x + b_out)                               one controller per block
    LSTM:  (h, c) = LSTMCell(x, state);  dt = sigmoid(W_out h + b_out)    one per stage, state carried

so dt in (0, 1)^C, applied as y + F(y) * dt (times the stage's fixed h when h != 1). dt depends on
the weights only, never on the data, which is why `fold_step_sizes` can freeze it for inference.
"""

from __future__ import annotations

import math
import operator

import torch
from torch import fx, nn

from rkcompile import naming
from rkcompile.errors import CompileError
from rkcompile.graphmeta import NodeMeta, Role

__all__ = ["FcController", "LstmController", "project", "emit_step_size"]


def project(weights: tuple[torch.Tensor, ...]) -> torch.Tensor:
    """Average each weight over its input dimension (dim 1), flatten, and concatenate (Yang et al. 2020, eq. 10)."""
    return torch.cat([w.mean(dim=1).flatten() for w in weights])


class FcController(nn.Module):
    """TSC_2fc: dt = sigmoid(fc_out(relu(fc_in(w_bar)))), one per block."""

    def __init__(self, inputs: int, hidden: int, channels: int, image: bool) -> None:
        super().__init__()
        self.fc_in = nn.Linear(inputs, hidden)
        self.fc_out = nn.Linear(hidden, channels)
        self.shape = (channels, 1, 1) if image else (channels,)

    def forward(self, *weights: torch.Tensor) -> torch.Tensor:
        """The block's per-channel step dt in (0, 1), shaped to broadcast over the state."""
        x = torch.relu(self.fc_in(project(weights)))
        return torch.sigmoid(self.fc_out(x)).reshape(self.shape)


class LstmController(nn.Module):
    """TSC_LSTM: one LSTM cell shared by a stage's blocks, so each step size knows the previous ones."""

    def __init__(self, inputs: int, hidden: int, channels: int, image: bool) -> None:
        super().__init__()
        self.fc_in = nn.Linear(inputs, hidden)
        self.cell = nn.LSTMCell(hidden, hidden)
        self.fc_out = nn.Linear(hidden, channels)
        self.shape = (channels, 1, 1) if image else (channels,)

    def forward(self, state, *weights: torch.Tensor):
        """(dt, new state) from the block's weights and the previous block's state (None for the first)."""
        x = torch.relu(self.fc_in(project(weights)))
        h, c = self.cell(x.unsqueeze(0), state)
        return torch.sigmoid(self.fc_out(h[0])).reshape(self.shape), (h, c)


def emit_step_size(compiler, stage, n: int, b: int, shape, name: str, base: NodeMeta) -> fx.Node:
    """Emit block b's controlled step h * dt through the compiler's API (`compiler.Compiler`); return its node.

    An LSTM controller's state goes from block to block of stage n through `compiler.controller_states[n]`.
    """
    root = compiler.root
    targets = [
        f"{naming.evaluation(n, b, i + 1)}.{layer}.weight"
        for i in range(stage.tableau.stages)
        for layer, module in root.get_submodule(naming.evaluation(n, b, i + 1)).named_children()
        if isinstance(module, (nn.Conv2d, nn.Linear))
    ]
    if not targets:
        raise compiler.spec.error(("stages", n, "step", "controller"), "a step-size controller reads the conv or "
                                  "linear weights of F; this module has none", CompileError)
    meta = base.but(role=Role.CONTROLLER)
    weights = [compiler.get_attr(target, meta) for target in targets]
    inputs = sum(root.get_parameter(t).shape[0] * math.prod(root.get_parameter(t).shape[2:]) for t in targets)
    hidden = max(1, shape.width // stage.step.reduction)
    if stage.step.controller == "fc":
        target = naming.controller(n, b)
        compiler.attach(target, FcController(inputs, hidden, shape.width, shape.image))
        dt = compiler.call_module(target, tuple(weights), f"{name}_controller", meta)
    else:
        target = naming.controller(n)
        if b == 0:
            compiler.attach(target, LstmController(inputs, hidden, shape.width, shape.image))
        state = compiler.controller_states.get(n)
        out = compiler.call_module(target, (state, *weights), f"{name}_controller", meta)
        dt = compiler.function(operator.getitem, (out, 0), f"{name}_dt", meta)
        compiler.controller_states[n] = compiler.function(operator.getitem, (out, 1), f"{name}_state", meta)
    h = float(stage.h)
    return dt if h == 1 else compiler.function(torch.mul, (dt, h), f"{name}_h_dt", meta)
