"""The compiler: a validated spec → a torch.fx GraphModule, built node by node (no tracing).

Names follow the papers: `stage{n}`, `block{b}` (one integrator step), `eval{i}` (the i-th evaluation
k_i of the step), `piece{p}` (a basis piece of theta(t)), and the layer (`conv1`, `bn1`, ...). Submodule
targets read `stage0.block3.eval2.conv1`; graph nodes read `stage0_block3_k2_conv1`.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import fx, nn
from torch.fx._lazy_graph_module import _make_graph_module, _use_lazy_graph_module

from rkcompile import naming
from rkcompile.checkpointing import groups_of, outline_checkpoints
from rkcompile.collector import collector_paused
from rkcompile.entries import EntryPlan
from rkcompile.errors import CompileError
from rkcompile.graphmeta import NodeMeta, Role, put
from rkcompile.graphmeta import Part as EntryPart
from rkcompile.inlining import inline, trace
from rkcompile.integrators import block_c, layout, lowering
from rkcompile.limits import Limits, check_counts, estimate, needs_exact
from rkcompile.load import load_spec, parse_overrides
from rkcompile.lowering import StepPlan
from rkcompile.lowering_registers import lower_step_registers, stage_lowering
from rkcompile.modules import LayerCall, Part, Scale, activation, build_part
from rkcompile.planning import StagePlan
from rkcompile.reversible import outline_reversible, reversible_stages
from rkcompile.shapes import PartPlan, Shape
from rkcompile.spec import Spec, Stage
from rkcompile.stage_options import Init, drop_rates, initialise

__all__ = ["build", "compile_spec", "Compiler"]


@collector_paused()
def build(spec_or_path: Spec | str | Path, overrides=None, *, limits: Limits | None = None, device=None,
          **fields) -> fx.GraphModule:
    """Compile a validated Spec or the spec file at a path to a GraphModule; `stages__0__integrator="rk4"` overrides.

    `overrides` is a mapping {dotted path: value} or a list of "path=value" strings (as `--set` takes them).
    YAML text is parsed first with `parse_spec`. `limits` raises the resource limits (`rkcompile.limits`);
    `device="meta"` builds without allocating memory (for counting).
    """
    changes: dict | list
    if fields or isinstance(overrides, Mapping):
        changes = parse_overrides(overrides or {})
        changes.update({k.replace("__", "."): v for k, v in fields.items()})
    else:  # "path=value" strings go on as written, so that an error there is located at that --set
        changes = list(overrides or ())
        parse_overrides(changes)  # a malformed one is refused here, before the spec is read
    spec = load_spec(spec_or_path, changes or None, limits=limits)
    if device is None and needs_exact(estimate(spec), limits):
        _checked(spec, torch.device("meta"), limits)  # close to a limit: count exactly on the meta device first
    return _checked(spec, device, limits)


def _checked(spec: Spec, device, limits: Limits | None) -> fx.GraphModule:
    """Compile on `device` (the default device if None) and compare the exact counts with the limits."""
    meta = device is not None and torch.device(device).type == "meta"
    # a network on the meta device is for counting, analysis and drawing, which read the graph and never run the
    # generated forward: its Python code is generated on first use only (torch.fx's lazy GraphModule)
    with torch.device(device) if device is not None else contextlib.nullcontext(), _use_lazy_graph_module(meta):
        module = compile_spec(spec)
    check_counts(spec, sum(p.numel() for p in module.parameters()), len(module.graph.nodes), limits)
    return module


def compile_spec(spec: Spec) -> fx.GraphModule:
    """A validated Spec → its GraphModule; pure: `spec.seed` seeds the weights without touching the global RNG."""
    if not isinstance(spec, Spec):
        raise CompileError(f"compile_spec expects a validated Spec, found {type(spec).__name__}")
    if spec.seed is None:
        return Compiler(spec).compile()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(spec.seed)
        return Compiler(spec).compile()


class Compiler:
    """Lowers a planned spec part by part into one fx.Graph over one root module.

    The methods `attach`, `call_part`, `call_module`, `get_attr` and `function` are the API through which
    entry kinds and step-size controllers add nodes; `controller_states` carries an LSTM controller's state
    from block to block of a stage.
    """

    def __init__(self, spec: Spec) -> None:
        self.spec = spec
        self.root = nn.Module()
        self.graph = fx.Graph()
        self.functions: list[str] = []  # targets of every F created, used by the graph or not
        self.controller_states: dict[int, fx.Node] = {}
        self.steppers: dict[int, object] = {}  # stage → the lowering of a family that carries history

    def compile(self) -> fx.GraphModule:
        """Lower the whole spec: input, stem, stages, head; lint the graph and wrap it in a GraphModule."""
        spec, g, plan = self.spec, self.graph, self.spec.plan
        x = g.placeholder("x")
        put(x, NodeMeta(Role.INPUT))
        if plan.stem is not None:
            x = self.emit_part(x, plan.stem, naming.STEM, naming.node_name(naming.STEM), NodeMeta(Role.STEM))
        for n, (stage, stage_plan) in enumerate(zip(spec.stages, plan.stages)):
            x = self.stage(x, stage, stage_plan, n)
        if plan.head is not None:
            x = self.emit_part(x, plan.head, naming.HEAD, naming.node_name(naming.HEAD), NodeMeta(Role.HEAD))
        g.output(x)
        g.lint()
        module = _make_graph_module(self.root, g, class_name=_class_name(spec.name))
        # GraphModule keeps only what the graph calls; a basis piece that no step samples (more pieces than
        # steps reach) is still part of theta(t): keep it, so parameters depend on the pieces alone
        for target in self.functions:  # (re)attached whole: a mixed evaluation reads only some tensors of F
            module.add_submodule(target, self.root.get_submodule(target))
        module.spec = spec  # type: ignore[assignment]  # torch types Module.__setattr__'s value as Tensor | Module
        groups = groups_of(spec)
        if groups:
            outline_checkpoints(module, groups)
        stages = reversible_stages(spec)
        return outline_reversible(module, stages) if stages else module

    # ------------------------------------------------------------ the API for entries and controllers
    def attach(self, target: str, module: nn.Module) -> None:
        """Register `module` at a dotted path under the root, creating empty containers on the way."""
        parent = self.root
        *parents, last = target.split(".")
        for name in parents:
            if not hasattr(parent, name):
                parent.add_module(name, nn.Module())
            parent = getattr(parent, name)
        parent.add_module(last, module)

    def call_part(self, x: fx.Node, part: Part, target: str | None, name: str, meta: NodeMeta) -> fx.Node:
        """Emit one node per layer of `part` (registered at `target`), named `{name}_{layer}`."""
        for call in part.calls:
            if call.inline and call.module is not None:  # (only a module can be traced; a function is called)
                traced = trace(call.module)
                if traced is not None:
                    x = inline(self.graph, x, traced, f"{target}.{call.name}", f"{name}_{call.name}",
                               meta.but(layer=call.label or call.name))
                    continue
            inputs = (x, _time(meta)) if call.timed else (x,)  # a time-conditioned F's layers read t
            if call.module is not None:
                x = self.graph.create_node("call_module", f"{target}.{call.name}", inputs, {}, name=f"{name}_{call.name}")
            else:
                assert callable(call.function), f"layer {call.name!r} has neither a module nor a function"
                x = self.graph.create_node("call_function", call.function, (*inputs, *call.args), {},
                                           name=f"{name}_{call.name}")
            # asked to inline but untraceable: one node whose temporaries analyses cannot see
            put(x, meta.but(layer=call.label or call.name, opaque=call.inline))
        return x

    def emit_part(self, x: fx.Node, plan: PartPlan, target: str, name: str, meta: NodeMeta) -> fx.Node:
        """Build a planned part's layers, attach them at `target` (if it has any) and emit its nodes."""
        part = build_part(plan)
        if any(call.module is not None for call in part.calls):
            self.attach(target, part)
        return self.call_part(x, part, target, name, meta)

    def call_module(self, target: str, args: tuple, name: str, meta: NodeMeta) -> fx.Node:
        """Emit a call of the submodule at `target`."""
        node = self.graph.create_node("call_module", target, args, {}, name=name)
        put(node, meta)
        return node

    def get_attr(self, target: str, meta: NodeMeta) -> fx.Node:
        """Emit a read of the parameter or buffer at `target`."""
        node = self.graph.get_attr(target)
        put(node, meta)
        return node

    def function(self, fn, args: tuple, name: str, meta: NodeMeta, kwargs: dict | None = None) -> fx.Node:
        """Emit a call_function node with rk metadata."""
        node = self.graph.create_node("call_function", fn, args, kwargs or {}, name=name)
        put(node, meta)
        return node

    # ------------------------------------------------------------ stages
    def stage(self, x: fx.Node, stage: Stage, plan: StagePlan, n: int) -> fx.Node:
        """Emit a stage: its entry unit, then one integrator step per block."""
        if plan.entry is not None:
            x = stage.entry.emit(EntryEmitter(self, stage, plan.entry, n), x)
        shape, tableau, blocks = plan.shape, stage.tableau, stage.blocks
        learned = stage.step.learn != "none"
        step = StepPlan(tableau, stage.h, stage.step.epsilon.value, learned)
        # WeightMode.functions annotates `stages` as int; PerEvaluation, the one kind reading it, takes per-block tuples
        targets = stage.weights.functions(n, blocks, layout(tableau, blocks))
        lower = lowering(stage.family, step, self, n, stage)
        functions = plan.functions or (plan.function,)  # an interleaved cycle: F number j is member j mod its length
        rates = drop_rates(stage.drop_path, len(targets))
        parts = [self._new_f(stage, functions[j % len(functions)], target, rates[j]) for j, target in enumerate(targets)]
        after_name = stage.module.after_activation()
        after = activation(after_name)
        lower = self.lowering(stage, lower)
        for b in range(blocks):
            base = NodeMeta(Role.EVAL, stage=n, block=b)
            name = naming.node_name(naming.block(n, b))
            scale = self.step_scale(stage, n, b, shape, name, base) if learned else None

            def evaluate(z: fx.Node, i: int, b: int = b, base: NodeMeta = base) -> fx.Node:
                terms = stage.weights.mix(b, i, blocks, tableau)
                target, part = targets[terms[0][0]], parts[terms[0][0]]
                meta = base.but(evaluation=i + 1, weights=target, piece=naming.parse(target).piece,
                                time=(b + block_c(tableau, b)[i]) * stage.h)
                name = naming.node_name(naming.evaluation(n, b, i + 1))
                if stage.weights.mixes:  # theta(t) = sum_beta phi_beta(t) theta_beta, even with one term
                    from rkcompile.mixing import call_mixed

                    # Weights.mix gives Python numbers (int, Fraction, float) as object; call_mixed float()s each
                    mix = tuple((targets[j], w) for j, w in terms)
                    return call_mixed(self, z, [parts[j] for j, _ in terms], mix, name, meta.but(mix=mix))
                return self.call_part(z, part, target, name, meta)

            x = lower(self.graph, x, step, evaluate, name, base.but(role=Role.OUTPUT), scale)
            if after is not None:
                assert after_name is not None  # activation(None) is None
                x = self.function(after, (x,), f"{name}_{after_name.replace('-', '_')}", base.but(role=Role.AFTER))
        return x

    def lowering(self, stage: Stage, default):
        """The step emitter: `default` (the family's), or the minimal-register one where the stage's `lowering` picks it."""
        choice = stage_lowering(stage)
        if choice is not None and choice.lowering == "registers":
            return lower_step_registers
        return default

    def _new_f(self, stage: Stage, plan: PartPlan, target: str, drop: float = 0.0) -> Part:
        self.functions.append(target)
        part = build_part(plan)
        if stage.init != Init():
            initialise(part, stage.init)
        calls = list(part.calls)
        if stage.step.skip_init:  # s * F with s = 0 at init (ContinuousNet's skip-init), one s per F
            calls.append(LayerCall("skip", Scale(0.0)))
        if drop:  # stochastic depth: each sample's F output zeroed with probability `drop` (training only)
            from torchvision.ops import StochasticDepth

            calls.append(LayerCall("drop_path", StochasticDepth(drop, "row")))
        if len(calls) > len(part.calls):
            part = Part(calls)
        self.attach(target, part)
        return part

    def step_scale(self, stage: Stage, n: int, b: int, shape: Shape, name: str, base: NodeMeta):
        """The block's learned step size times each k: a parameter h (HO-ResNet's adaptive h, TSC_indp), a frozen
        h (a buffer, as `fold_step_sizes` leaves it), or h * a controller's dt (TSC_2fc, TSC_LSTM; Yang et al. 2020)."""
        target = naming.block(n, b)
        if not _has(self.root, target):
            self.attach(target, nn.Module())
        if stage.step.controller != "none":
            from rkcompile.controllers import emit_step_size

            h = emit_step_size(self, stage, n, b, shape, name, base)
        else:
            size = (shape.width, 1, 1) if shape.image else (shape.width, 1) if shape.sequence == "signal" else (shape.width,)
            value = torch.full(() if stage.step.learn == "scalar" else size, float(stage.h))
            owner = self.root.get_submodule(target)
            if stage.step.frozen:
                owner.register_buffer("h", value)
            else:
                owner.register_parameter("h", nn.Parameter(value))
            h = self.get_attr(f"{target}.h", base.but(role=Role.PARAMETER))

        def scale(k: fx.Node, i: int) -> fx.Node:
            return self.function(torch.mul, (k, h), naming.node_name(naming.evaluation(n, b, i + 1), "h"),
                                 base.but(role=Role.SCALE, evaluation=i + 1))

        return scale


class EntryEmitter:
    """What an entry kind's `emit` wires with: its planned parts by role, functions, and F's `after` activation."""

    def __init__(self, compiler: Compiler, stage: Stage, plan: EntryPlan, n: int) -> None:
        self.compiler, self.stage, self.plan, self.n = compiler, stage, plan, n
        self.name = naming.node_name(naming.entry(n))
        self.meta = NodeMeta(Role.ENTRY, stage=n, entry=True)

    def part(self, role: str, x: fx.Node) -> fx.Node:
        """Emit the planned part `role` ("f" or "shortcut") at `stage{n}.entry.{role}`; a part of functions only
        is attached nowhere and named after the entry (`stage0_entry_subsample`)."""
        plan, meta = self.plan.parts[role], self.meta.but(part=EntryPart(role))
        if all(op.kind == "function" for op in plan.ops):
            return self.compiler.emit_part(x, plan, naming.entry(self.n), self.name, meta)
        target = naming.entry(self.n, role)
        return self.compiler.emit_part(x, plan, target, naming.node_name(target), meta)

    def function(self, fn, args: tuple, suffix: str, kwargs: dict | None = None, role: Role = Role.OUTPUT) -> fx.Node:
        """Emit `fn(*args, **kwargs)` named `stage{n}_entry_{suffix}` (the entry's residual sum by default)."""
        return self.compiler.function(fn, args, f"{self.name}_{suffix}", self.meta.but(role=role), kwargs)

    def after(self, y: fx.Node) -> fx.Node:
        """The stage's F activation after a residual addition, if any."""
        name = self.stage.module.after_activation()
        fn = activation(name)
        if fn is None:
            return y
        assert name is not None  # activation(None) is None
        return self.function(fn, (y,), name.replace("-", "_"), role=Role.AFTER)


def _time(meta: NodeMeta) -> float:
    """The time a time-conditioned F sees: its evaluation's t_n + c_i h, the one its metadata and drawings carry."""
    if meta.time is None:
        raise CompileError(f"a time-conditioned layer outside an evaluation of F ({meta.unit})")
    return float(meta.time)


def _has(root: nn.Module, target: str) -> bool:
    try:
        root.get_submodule(target)
        return True
    except AttributeError:
        return False


def _class_name(name: str) -> str:
    words = re.findall(r"[A-Za-z0-9]+", name)
    out = "".join(w[:1].upper() + w[1:] for w in words) or "Network"
    return out if out[0].isalpha() else "Net" + out
