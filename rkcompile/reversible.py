"""Reversible backprop of a stage: keep only its last two states and rebuild the earlier ones in backward.

A two-step method with α_1 ≠ 0 and β_1 = 0 — leapfrog, second order, momentum (Chang et al. 2018; Sander et al.
2021, Momentum ResNets) — has the exact inverse step y_{n−1} = (y_{n+1} − α_0 y_n − h^q β_0 f_n) / α_1
(`LinearMultistep.inverse_step`). A stage with `backprop: reversible` runs its blocks without autograd and saves
only (y_{N−1}, y_N); backward walks the blocks last to first, evaluating F_b(y_b) once with autograd on, taking
y_{b−1} from the inverse step, re-running the block's combination and back-propagating through that block alone
(as RevNet, Gomez et al. 2017, does for additive coupling). What autograd holds for backward therefore does not
grow with depth; backward costs one more evaluation of F per block.

The stage's blocks are outlined from the compiled graph (as `rkcompile.checkpointing` outlines groups): per
block its F (y_b → f_b) and its combination (y_b, y_{b−1}, f_b → y_{b+1}), or the whole block for a start-up RK
step (recomputed from the rebuilt y_0). Batch-norm running statistics are left as the forward pass left them
(backward's re-evaluation does not count the batch twice); F is evaluated on the same batch, so batch statistics
invert exactly. Random layers (dropout) are replayed with the random state the forward pass used for that block.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch
from torch import fx, nn
from torch.utils.checkpoint import get_device_states, set_device_states

from rkcompile import graphmeta
from rkcompile.checkpointing import recomputation
from rkcompile.outlining import outline

__all__ = ["ReversibleStage", "block_parts", "outline_reversible", "reversible_stages", "run_reversible", "stage_states"]


def reversible_stages(spec) -> list[int]:
    """Indices of the spec's stages with `backprop: reversible`."""
    return [n for n, stage in enumerate(spec.stages) if stage.backprop == "reversible"]


@dataclass
class _Block:
    """One outlined block; `random`: F draws random numbers (dropout), so forward records the random state."""

    index: int
    parts: list[nn.Module]
    random: bool

    def parameters(self) -> list[torch.Tensor]:
        """The block's parameters, once each."""
        return list({id(p): p for m in self.parts for p in m.parameters()}.values())

    def batch_norm_buffers(self) -> list[torch.Tensor]:
        """Running statistics of the block's batch norms."""
        return [b for m in self.parts for sub in m.modules() if isinstance(sub, nn.modules.batchnorm._BatchNorm)
                for b in sub.buffers()]


@dataclass
class _StartupBlock(_Block):
    """A start-up RK step y_b → y_{b+1}: not inverted, run again from the rebuilt y_b."""

    step: fx.GraphModule


@dataclass
class _MethodBlock(_Block):
    """A method step: F (y_b → f_b) and the combination (y_b, y_{b−1}, f_b → y_{b+1})."""

    f: fx.GraphModule
    combine: fx.GraphModule
    reads_previous: bool  # False for block 0 started from rest, which reads y_0 as y_{−1}
    theta: str | None  # the block's learnable coefficient (momentum's γ_n), a path in `combine`

    def __call__(self, y: torch.Tensor, previous: torch.Tensor, f: torch.Tensor) -> torch.Tensor:
        """The combination y_{b+1}."""
        return self.combine(y, previous, f) if self.reads_previous else self.combine(y, f)


class ReversibleStage(nn.Module):
    """A stage's blocks run forward without autograd and inverted in backward (see the module docstring).

    An attribute of the network, not a registered submodule: its blocks use the network's own modules, so
    parameters and the state dict are unchanged."""

    def __init__(self, n: int, method, h, epsilon, blocks: list[_StartupBlock | _MethodBlock]) -> None:
        super().__init__()
        self.n, self.method, self.blocks = n, method, blocks
        self.hq_eps = h ** method.derivative * epsilon  # exact where h and ε are, as the graph's constants

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """y_N of the stage from its input; saves only (y_{N−1}, y_N) when autograd records."""
        params = [p for b in self.blocks for p in b.parameters()]
        params = list({id(p): p for p in params}.values())
        if torch.is_grad_enabled() and (x.requires_grad or any(p.requires_grad for p in params)):
            return _Reversible.apply(self, x, *params)
        return self.run(x, None)[1]

    def run(self, x: torch.Tensor, states: list | None) -> tuple[torch.Tensor, torch.Tensor]:
        """(y_{N−1}, y_N) from y_0 = x; records each random block's random state into `states`."""
        previous, y = x, x  # y_{−1} = y_0 when started from rest; a start-up step replaces it
        for block in self.blocks:
            if states is not None and block.random:
                states.append(_random_state(y))
            if isinstance(block, _StartupBlock):
                previous, y = y, block.step(y)
                continue
            f = block.f(y)
            out = block(y, previous, f)
            del f
            previous, y = y, out
        return previous, y

    def coefficients(self, block: _MethodBlock) -> tuple[float, float, float]:
        """(α_0, α_1, h^q ε β_0) of a method step, with the block's learnable coefficient as trained now."""
        lmm = self.method
        theta = float(block.combine.get_parameter(block.theta)) if block.theta else lmm.theta
        alpha, beta = lmm.at(theta)
        return float(alpha[0]), float(alpha[1]), float(self.hq_eps * beta[0])

    def invert(self, block: _MethodBlock, y: torch.Tensor, y_next: torch.Tensor, f: torch.Tensor) -> torch.Tensor:
        """y_{b−1} = (y_{b+1} − α_0 y_b − h^q ε β_0 f_b) / α_1, one new tensor."""
        a0, a1, c = self.coefficients(block)
        out = torch.add(y_next, y, alpha=-a0)
        out.add_(f, alpha=-c)
        return out.div_(a1)


class _Reversible(torch.autograd.Function):
    """The stage as one autograd node: forward saves (y_{N−1}, y_N), backward rebuilds and inverts block by block."""

    @staticmethod
    def forward(ctx, stage: ReversibleStage, x: torch.Tensor, *params: torch.Tensor) -> torch.Tensor:
        states: list = []
        with torch.no_grad():
            previous, y = stage.run(x, states)
        ctx.stage, ctx.states, ctx.params = stage, states, params
        ctx.save_for_backward(previous, y)
        return y

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        stage: ReversibleStage = ctx.stage
        previous, y = ctx.saved_tensors
        states = list(ctx.states)
        totals: dict[int, torch.Tensor] = {}
        g_next: torch.Tensor | None = grad  # dL/dy_{b+1}
        g: torch.Tensor | None = None  # what is known of dL/dy_b (from y_b's use as history)
        y_next, y_b = y, previous
        for block in reversed(stage.blocks):
            state = states.pop() if block.random else None
            buffers = block.batch_norm_buffers()
            kept = [b.clone() for b in buffers]
            inputs, out = _replay(stage, block, y_b, y_next, state)
            params = [p for p in block.parameters() if p.requires_grad]
            grads = torch.autograd.grad(out, [*inputs, *params], g_next, allow_unused=True)
            del out
            with torch.no_grad():  # after the gradient: batch norm's backward reads the running statistics
                for b, v in zip(buffers, kept, strict=True):
                    b.copy_(v)
            g_b = _add(g, grads[0])
            g_prev = grads[1] if len(inputs) > 1 else None
            for p, d in zip(params, grads[len(inputs):]):
                if d is not None:
                    totals[id(p)] = totals[id(p)] + d if id(p) in totals else d
            y_next = inputs[0].detach()
            if len(inputs) > 1:
                y_b = inputs[1].detach()
            g_next, g = g_b, g_prev
        dx = _add(g_next, g) if ctx.needs_input_grad[1] else None  # g: None, block 0 reads no y_{−1}
        return (None, dx, *(totals.get(id(p)) for p in ctx.params))


def _replay(stage: ReversibleStage, block: _StartupBlock | _MethodBlock, y_b: torch.Tensor, y_next: torch.Tensor,
            state) -> tuple[list[torch.Tensor], torch.Tensor]:
    """Re-run one block under autograd from y_b (rebuilding y_{b−1} by the inverse step): ([y_b, y_{b−1}], y_{b+1}).

    The caller restores the block's batch-norm running statistics once the block's gradient is taken."""
    with torch.enable_grad(), _replaying(state), recomputation():
        y = y_b.detach().requires_grad_()
        if isinstance(block, _StartupBlock):
            return [y], block.step(y)
        f = block.f(y)
        if not block.reads_previous:
            return [y], block(y, y, f)
        with torch.no_grad():
            previous = stage.invert(block, y_b, y_next, f)
        previous.requires_grad_()
        return [y, previous], block(y, previous, f)


@contextlib.contextmanager
def _replaying(state):
    """Replay a block's recorded random state (CPU and the state's device), restoring the current one after."""
    if state is None:
        yield
        return
    cpu, device_type, devices, states = state
    with torch.random.fork_rng(devices=devices, device_type=device_type):
        torch.set_rng_state(cpu)
        set_device_states(devices, states, device_type=device_type)
        yield


def _random_state(y: torch.Tensor) -> tuple:
    devices, states = get_device_states(y) if y.device.type != "cpu" else ([], [])
    return torch.get_rng_state(), y.device.type if y.device.type != "cpu" else "cuda", devices, states


def _add(a: torch.Tensor | None, b: torch.Tensor | None) -> torch.Tensor | None:
    if a is None:
        return b
    return a if b is None else a + b


# ---------------------------------------------------------------- outlining the stage from the compiled graph
def outline_reversible(module: fx.GraphModule, stages: list[int]) -> fx.GraphModule:
    """Replace each reversible stage's block nodes by one call of its `ReversibleStage` (in place)."""
    from rkcompile.analysis.units import node_unit  # the analysis package imports the compiler
    from rkcompile.spec import Spec

    graph, spec = module.graph, module.spec
    assert isinstance(spec, Spec)
    for n in stages:
        stage = spec.stages[n]
        labels = [f"stage{n}.block{b}" for b in range(stage.blocks)]
        members = {label: [node for node in graph.nodes if node_unit(node) == label] for label in labels}
        states = stage_states(members, labels)
        blocks = [_outline_block(module, n, b, members[label], states[b], states[b - 1] if b else states[0],
                                 states[b + 1], b < stage.tableau.startup_steps)
                  for b, label in enumerate(labels)]
        runner = ReversibleStage(n, stage.tableau.method, stage.h, stage.step.epsilon.value, blocks)
        name = f"stage{n}_reversible"
        object.__setattr__(module, name, runner)  # not a submodule: parameters and the state dict are unchanged
        first, last = members[labels[0]][0], states[-1]
        rk = _meta(last).but(role=graphmeta.Role.REVERSIBLE, block=None, evaluation=None,
                                      layer=f"blocks 0-{stage.blocks - 1}")
        with graph.inserting_before(first):
            function = graph.get_attr(name)
            call = graph.call_function(run_reversible, (function, states[0]), name=f"{name}_call")
        graphmeta.put(function, rk)
        graphmeta.put(call, rk)
        last.replace_all_uses_with(call)
        for label in reversed(labels):
            for m in reversed(members[label]):
                graph.erase_node(m)
    graph.lint()
    module.recompile()
    return module


def _meta(node: fx.Node) -> graphmeta.NodeMeta:
    meta = graphmeta.get(node)
    if meta is None:  # pragma: no cover - every node of a stage's blocks has the compiler's record
        raise AssertionError(f"{node.name} has no rk metadata")
    return meta


def run_reversible(stage: ReversibleStage, x: torch.Tensor) -> torch.Tensor:
    """The graph's call of a reversible stage."""
    return stage(x)


def stage_states(members: dict[str, list[fx.Node]], labels: list[str]) -> list[fx.Node]:
    """y_0 (the stage input) and each block's output y_{b+1}: the one value a block passes on."""
    first = members[labels[0]]
    own = set(first)
    inputs = list(dict.fromkeys(a for m in first for a in m.all_input_nodes if a not in own))
    out = [inputs[0]]
    for label in labels:
        mine = set(members[label])
        passed = [m for m in members[label] if any(u not in mine for u in m.users)]
        if len(passed) != 1:  # pragma: no cover - a reversible method carries no f history
            raise AssertionError(f"{label} passes on {len(passed)} values")
        out.append(passed[0])
    if len(inputs) != 1:  # pragma: no cover - a stage's first block reads only the stage input
        raise AssertionError(f"{labels[0]} reads {len(inputs)} values from before the stage")
    return out


def _outline_block(module: fx.GraphModule, n: int, b: int, members: list[fx.Node], y: fx.Node, previous: fx.Node,
                   out: fx.Node, startup: bool) -> _StartupBlock | _MethodBlock:
    """The block's outlined GraphModules: the whole step (start-up), or F and the combination."""
    prefix = f"Stage{n}Block{b}"
    if startup:
        step = outline(module, members, [y], out, f"{prefix}Step")
        return _StartupBlock(b, [step], _random(step), step)
    evaluation, f, rest = block_parts(members)
    reads_previous = previous is not y and any(previous in m.all_input_nodes for m in rest)
    fm = outline(module, evaluation, [y], f, f"{prefix}F")
    combine = outline(module, rest, [y, previous, f] if reads_previous else [y, f], out, f"{prefix}Combine")
    theta = next((str(m.target) for m in rest if m.op == "get_attr"), None)
    return _MethodBlock(b, [fm, combine], _random(fm), fm, combine, reads_previous, theta)


def block_parts(members: list[fx.Node]) -> tuple[list[fx.Node], fx.Node, list[fx.Node]]:
    """A method step's nodes split into F's (in order), F's value f_b, and the combination's (in order)."""
    mine = set(members)
    f = next(m for m in members if _meta(m).role == graphmeta.Role.EVAL
             and any(u in mine and _meta(u).role != graphmeta.Role.EVAL for u in m.users))
    evaluation = _ancestors(f, mine)
    return [m for m in members if m in evaluation], f, [m for m in members if m not in evaluation]


def _ancestors(node: fx.Node, within: set[fx.Node]) -> set[fx.Node]:
    out, todo = set(), [node]
    while todo:
        m = todo.pop()
        if m in within and m not in out:
            out.add(m)
            todo.extend(m.all_input_nodes)
    return out


def _random(part: nn.Module) -> bool:
    """Whether a part draws random numbers in training: dropout with p > 0 (also inside attention)."""
    for m in part.modules():
        p = m.p if isinstance(m, nn.modules.dropout._DropoutNd) else getattr(m, "dropout", None)
        if isinstance(p, float) and p > 0:
            return True
    return False
