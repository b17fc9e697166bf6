"""Lowering of a multistep stage: start-up RK steps, then one evaluation per step and the carried history.

    y_{n+1} = Σ_j α_j y_{n−j} + h^q ε Σ_j β_j f_{n−j}        (+ θ_n (Σ_j α¹_j y_{n−j} + h^q ε Σ_j β¹_j f_{n−j}))

The history y_{n−1}, …, f_{n−1}, … are the graph nodes of earlier steps, kept alive by their later users, so the
analysis sees them as live state; each term they add is its own node (role "history"), which the drawings show
as an edge from y_{n−j} or f_{n−j}. Start-up steps reuse the RK lowering, and their k_1 = F(y_n) is f_n.
"""

from __future__ import annotations

import torch
from torch import fx, nn

from rkcompile.graphmeta import NodeMeta, Role, put
from rkcompile.lowering import StepPlan, lower_step

__all__ = ["MultistepStepper"]


class MultistepStepper:
    """The lowering of one multistep stage: called once per block, it keeps the stage's history between calls."""

    def __init__(self, method, plan: StepPlan, compiler, n: int, previous: MultistepStepper | None = None) -> None:
        self.method, self.lmm, self.compiler, self.n = method, method.method, compiler, n
        self.ylags, self.flags = self.lmm.history
        self.block = 0
        self.ys: list[fx.Node] = list(previous.ys) if previous is not None else []  # y_{n−1}, y_{n−2}, …
        self.fs: list[fx.Node] = list(previous.fs) if previous is not None else []  # f_{n−1}, f_{n−2}, …

    def __call__(self, graph: fx.Graph, y: fx.Node, plan: StepPlan, evaluate, name: str, meta: NodeMeta,
                 scale=None) -> fx.Node:
        """Emit block b (a start-up RK step or a multistep step) from y_n; returns y_{n+1}."""
        b, self.block = self.block, self.block + 1
        if b == 0 and self.method.startup_name == "rest":
            self.ys = [y] * self.ylags  # y_{−j} = y_0: v_0 = 0 (momentum), zero initial velocity (second order)
        if b < self.method.startup_steps:
            first: dict[int, fx.Node] = {}

            def evaluate_first(z: fx.Node, i: int) -> fx.Node:
                k = evaluate(z, i)
                first.setdefault(i, k)
                return k

            start = StepPlan(self.method.startup, plan.h, plan.epsilon)
            out = lower_step(graph, y, start, evaluate_first, name, meta.but(startup=self.method.startup.name))
            self._push(y, first[0])
            return out
        k = evaluate(y, 0)
        out = self._combine(graph, y, k, plan, name, meta, b)
        self._push(y, k)
        return out

    def _push(self, y: fx.Node, k: fx.Node) -> None:
        self.ys = ([y] + self.ys)[: self.ylags]
        self.fs = ([k] + self.fs)[: self.flags]

    def _terms(self, y: fx.Node, k: fx.Node, alpha, beta, hq) -> list[tuple[fx.Node, object, str, str]]:
        """(node, coefficient, node-name suffix, drawing label) of every non-zero term."""
        terms = []
        for j, a in enumerate(alpha):
            if a != 0 and j <= self.ylags:
                terms.append((y if j == 0 else self.ys[j - 1], a, f"ym{j}" if j else "y0", _label("y", j)))
        for j, c in enumerate(beta):
            if c != 0 and j <= self.flags:
                terms.append((k if j == 0 else self.fs[j - 1], hq * c, f"fm{j}" if j else "y1", _label("f", j)))
        return terms

    def _combine(self, graph: fx.Graph, y: fx.Node, k: fx.Node, plan: StepPlan, name: str, meta: NodeMeta,
                 b: int) -> fx.Node:
        lmm = self.lmm
        hq = plan.h ** lmm.derivative
        eps = plan.epsilon
        alpha, beta = (lmm.alpha, lmm.beta) if lmm.learn else lmm.at(lmm.theta)
        terms = self._terms(y, k, alpha, beta, hq)
        skip = alpha[0]
        base = None
        if skip == 1:
            base = y
            terms = [t for t in terms if t[2] != "y0"]
        out = _sum(graph, base, terms, name, meta, eps, skip)
        if lmm.learn:
            theta = self._parameter(b, meta)
            w_terms = self._terms(y, k, lmm.alpha1, lmm.beta1, hq)
            w = _sum(graph, None, w_terms, f"{name}_{lmm.learn}", meta.but(learned=lmm.learn), eps, None)
            out = graph.create_node("call_function", torch.addcmul, (out, theta, w), {}, name=f"{name}_{lmm.learn}")
            put(out, meta.but(role=Role.HISTORY, history="learned", learned=lmm.learn))
        return out

    def _parameter(self, b: int, meta: NodeMeta) -> fx.Node:
        """The step's learnable coefficient θ_n (LM-ResNet's k_n, momentum's γ_n) at stage{n}.block{b}.{name}."""
        lmm, target = self.lmm, f"stage{self.n}.block{b}"
        try:
            owner = self.compiler.root.get_submodule(target)
        except AttributeError:
            self.compiler.attach(target, nn.Module())
            owner = self.compiler.root.get_submodule(target)
        value = torch.empty(()).uniform_(*lmm.init_uniform) if lmm.init_uniform else torch.tensor(float(lmm.theta))
        owner.register_parameter(lmm.learn, nn.Parameter(value))
        return self.compiler.get_attr(f"{target}.{lmm.learn}", meta.but(role=Role.PARAMETER))


def _sum(graph: fx.Graph, base, terms, name: str, meta: NodeMeta, eps, skip) -> fx.Node:
    """base + Σ coefficient·node, one node per term; the k term is an "output" node as in an RK step."""
    out = base
    for node, coef, suffix, label in terms:
        value = coef * eps if label.startswith("f") else coef
        if out is None:
            new = graph.create_node("call_function", torch.mul, (node, float(value)), {}, name=f"{name}_{suffix}")
        else:
            kwargs: dict[str, fx.node.Argument] = {} if value == 1 else {"alpha": float(value)}
            new = graph.create_node("call_function", torch.add, (out, node), kwargs, name=f"{name}_{suffix}")
        if suffix == "y1" and meta.learned is None:
            put(new, meta.but(role=Role.OUTPUT, evaluation=1, source=1, coefficient=coef,
                              skip=None if skip == 1 else skip))
        else:
            put(new, meta.but(role=Role.HISTORY, history=label, coefficient=coef))
        out = new
    return out


def _label(what: str, lag: int) -> str:
    return f"{what}_n" if lag == 0 else f"{what}_{{n−{lag}}}"
