"""Transformations of compiled models: remanifest, refine (Queiruga et al. 2020), interpolate (Chang et al. 2018), fold (Yang et al. 2020).

Each one changes the spec's data, compiles a NEW model from it with `build`, and copies the old weights onto
it by name (`stage{n}.block{b}.eval{i}.*` per evaluation, `stage{n}.f.*` shared, `stage{n}.piece{p}.*`
basis, `stage{n}.entry.*`, `stage{n}.block{b}.h` and `.controller.*` per block); the input model is never
changed. Every tensor is copied, never shared, keeping its own dtype and device (`load_state_dict(assign=True)`).
`stage=None` transforms every stage the transformation applies to; a named stage it does not apply to is an
error. `transform(model, name, ...)` also returns {new state_dict key: old key it was copied from}.
"""

from __future__ import annotations

import copy
from collections.abc import Callable

import torch
from torch import fx

from rkcompile import graphmeta, naming
from rkcompile.compiler import build
from rkcompile.errors import RkcompileError, SpecError, TransformError
from rkcompile.exact import format_coefficient
from rkcompile.graphmeta import Role
from rkcompile.model import graph_size, parameter_count
from rkcompile.multistep_family import MultistepIntegrator
from rkcompile.planning import nearest_budgets
from rkcompile.spec import Basis, InlineTableau, NoEntry, PerEvaluation, Shared, _integrator_form

__all__ = ["remanifest", "refine", "interpolate", "fold_step_sizes", "transform", "parameter_count", "graph_size",
           "basis_data", "combine_pieces"]

_COEFFICIENTS = ("k", "gamma")  # a block's learnable multistep coefficient: LM-ResNet's k_n, momentum's γ_n

# new state_dict key -> (old key, factor the old value is multiplied by)
Rename = Callable[[str], tuple[str, float]]


def remanifest(model: fx.GraphModule, integrator=None, steps: int | None = None, stage: int | None = None):
    """The same weights wired with another tableau and/or number of steps (ContinuousNet, Queiruga et al. 2020 §4.4/§5.3).

    `integrator` is a tableau name, an inline-tableau mapping or a `Tableau`. Every stage keeps its interval: when
    its block count changes, a stage given by `h` is rewritten with T = h * blocks, in every weight mode (so 28
    Euler blocks of h = 1 become 7 RK4 blocks of h = 4). Basis and shared stages take any scheme and steps.
    Per-evaluation stages keep their budget E: the new tableau (s' evaluations per step) needs E % s' == 0 and
    gives E / s' blocks; the
    weights move in evaluation order, i.e. the F of old block b, evaluation i (flat index f = b*s + i - 1)
    becomes new block f // s', evaluation f % s' + 1. Learned per-block steps only survive an unchanged block
    count.
    """
    return _remanifest(model, integrator, steps, stage)[0]


def refine(model: fx.GraphModule, factor: int = 2, pieces: bool = True, steps: bool = True, stage: int | None = None):
    """Multiply basis pieces and/or steps by `factor` (ContinuousNet's refinement training, Queiruga et al. 2020).

    Pieces: piece p becomes pieces p*factor ... p*factor + factor - 1, each an exact copy (weights, biases, norm
    parameters and running statistics), so theta(t) and the function are unchanged. A linear (FEM) basis of M
    nodes gets (M-1)*factor + 1 nodes, each new node theta at its position (midpoint insertion for factor 2); a
    legendre basis of degree d gets degree (d+1)*factor - 1 with zero new coefficients: both exact too. Steps: the same ODE with a
    `factor` times smaller step, so the output moves by the integrator's discretization error only (shrinking
    at the scheme's order). Shared stages have no pieces: only their steps change.
    """
    return _refine(model, factor, pieces, steps, stage)[0]


def interpolate(model: fx.GraphModule, stage: int | None = None):
    """Insert a copy of every block right after it and halve h (multi-level ResNets, Chang et al. 2018 §4.1).

    A per-evaluation stage of B blocks (B*s evaluations) becomes 2B blocks. A stage with an entry (transition
    or stitch), which `evaluations` does not count, becomes entry + 2B + 1 blocks: the copy inserted after the
    entry comes from the following block, as the entry's shapes differ (Chang et al. 2018, appendix B); so B blocks give
    (2B + 1) * s evaluations. The entry itself is left as it was (the compiler does not scale it by h). Learned
    per-block h are copied and halved; controllers (2-FC) are copied; an LSTM controller runs over twice as many
    blocks.
    """
    return _interpolate(model, stage)[0]


def fold_step_sizes(model: fx.GraphModule):
    """Freeze learned step sizes and controller outputs into constant buffers for inference (Yang et al. 2020).

    Each block's step (its h parameter, or h * dt of its controller) is evaluated once from the graph itself
    and stored as the buffer `stage{n}.block{b}.h` of a stage with `step.frozen: true`; the controllers are
    gone, no step size is a parameter, and the outputs are bit-for-bit those of the input model.
    """
    return _fold(model)[0]


def transform(model: fx.GraphModule, name: str, **kwargs) -> tuple[fx.GraphModule, dict[str, str]]:
    """Apply a transformation by name; also return {new state_dict key: old key its value was copied from}."""
    from rkcompile.projection import _project

    functions: dict[str, Callable[..., tuple[fx.GraphModule, dict[str, str]]]] = {
        "remanifest": _remanifest, "refine": _refine, "interpolate": _interpolate, "fold": _fold, "project": _project}
    if name not in functions:
        raise TransformError(f"unknown transformation '{name}'; expected one of {', '.join(functions)}")
    return functions[name](model, **kwargs)


# ---------------------------------------------------------------- the four transformations
def _remanifest(model, integrator=None, steps=None, stage=None):
    spec = _spec(model, "remanifest")
    if integrator is None and steps is None:
        raise TransformError("remanifest: give an integrator and/or a number of steps")
    if steps is not None and (isinstance(steps, bool) or not isinstance(steps, int) or steps < 1):
        raise TransformError(f"remanifest: steps must be a positive integer, found {steps!r}")
    tableau = _tableau(integrator) if integrator is not None else None
    integrator = _as_data(integrator)  # a Tableau object goes into the spec by name, or inline as written
    changes, renames = {}, {}
    for n in _select(spec, stage, "remanifest", lambda st: None):
        st, data = spec.stages[n], _stage_data(spec, n)
        t = tableau or st.tableau
        if integrator is not None:
            data["integrator"] = copy.deepcopy(integrator)
        multistep = hasattr(t, "blocks_for") or hasattr(st.tableau, "blocks_for")  # start-up blocks differ
        if isinstance(st.weights, PerEvaluation) and multistep:
            budget = st.total_evaluations
            made = t.evaluations_for(steps) if steps is not None and hasattr(t, "evaluations_for") else \
                (steps * t.stages if steps is not None else budget)
            if made != budget:
                raise TransformError(f"remanifest: stage {n} has per-evaluation weights, a fixed budget of {budget} "
                                     f"evaluations; {steps} steps of {t.name} make {made}")
            if (t.blocks_for(budget) if hasattr(t, "blocks_for") else budget // t.stages) != st.blocks:
                _keep_interval(data, st)
            data.pop("steps", None)
            data["evaluations"] = budget
            renames[n] = _evaluation_order(n, st.tableau, st.blocks, t)
        elif isinstance(st.weights, PerEvaluation):
            budget = st.total_evaluations
            if steps is not None and steps * t.stages != budget:
                raise TransformError(f"remanifest: stage {n} has per-evaluation weights, a fixed budget of {budget} "
                                     f"evaluations; {steps} steps of {t.name} ({t.stages} evaluations each) make "
                                     f"{steps * t.stages}")
            if budget % t.stages:
                raise TransformError(f"remanifest: stage {n}: its budget of {budget} evaluations does not divide into "
                                     f"blocks of {t.stages} ({t.name} evaluates F {t.stages} times per step); "
                                     f"budgets that would: {', '.join(map(str, nearest_budgets(budget, t.stages)))}")
            if st.step.learn != "none" and budget // t.stages != st.blocks:
                raise TransformError(f"remanifest: stage {n} learns one step size per block: its {st.blocks} blocks "
                                     f"cannot become {budget // t.stages}; pick a tableau with {st.tableau.stages} "
                                     "evaluations per step")
            if budget // t.stages != st.blocks:
                _keep_interval(data, st)  # E Euler blocks of h = 1 integrate [0, E]; so do E/4 RK4 blocks of h = 4
            data.pop("steps", None)
            data["evaluations"] = budget
            renames[n] = _evaluation_order(n, st.tableau, st.blocks, t)
        else:
            new_steps = steps or st.blocks
            if new_steps != st.blocks:
                _keep_interval(data, st)
            data.pop("evaluations", None)
            data["steps"] = new_steps
        changes[n] = data
    return _rebuild(model, "remanifest", changes, renames)


def _refine(model, factor=2, pieces=True, steps=True, stage=None):
    spec = _spec(model, "refine")
    if isinstance(factor, bool) or not isinstance(factor, int) or factor < 2:
        raise TransformError(f"refine: factor must be an integer >= 2, found {factor!r}")
    if not pieces and not steps:
        raise TransformError("refine: nothing to do: pieces and steps are both off")

    def reason(st) -> str | None:
        if isinstance(st.weights, PerEvaluation):
            return "has per-evaluation weights: refine splits basis pieces and multiplies steps; use interpolate"
        if isinstance(st.weights, Shared) and not steps:
            return "has shared weights: there are no pieces to split (refine its steps instead)"
        return None

    changes, renames = {}, {}
    for n in _select(spec, stage, "refine", reason):
        st, data = spec.stages[n], _stage_data(spec, n)
        if pieces and isinstance(st.weights, Basis) and st.weights.basis == "constant":
            data["weights"] = {"kind": "basis", "pieces": st.weights.pieces * factor}
            renames[n] = _split_pieces(n, factor)
        elif pieces and isinstance(st.weights, Basis):  # FEM midpoint insertion, degree elevation: exact
            w, family = st.weights, st.weights.family
            data["weights"] = basis_data(w.basis, family.refined(w.size, factor))
            renames[n] = combine_pieces(n, family.refinement(w.size, factor))
        if steps:
            _keep_interval(data, st)
            data.pop("evaluations", None)
            data["steps"] = st.blocks * factor
        changes[n] = data
    return _rebuild(model, "refine", changes, renames)


def _interpolate(model, stage=None):
    spec = _spec(model, "interpolate")

    def reason(st) -> str | None:
        cycle = len(st.module.cycle())
        if cycle > 1:  # a block's copy after it would shift every later evaluation to another member of the cycle
            return (f"interleaves {cycle} modules ({st.module.label()}): a copy of each block inserted after it "
                    "would break their cycle; use remanifest")
        if isinstance(st.weights, PerEvaluation):
            return None
        return f"has {st.weights.kind} weights: interpolate doubles per-evaluation blocks; use refine instead"

    changes, renames = {}, {}
    for n in _select(spec, stage, "interpolate", reason):
        st, data = spec.stages[n], _stage_data(spec, n)
        entry = not isinstance(st.entry, NoEntry)
        blocks = 2 * st.blocks + (1 if entry else 0)
        if "steps" in data:
            data["steps"] = blocks
        else:
            data["evaluations"] = blocks * st.tableau.stages
        step = dict(data.get("step") or {})
        step.pop("T", None)
        step["h"] = format_coefficient(st.h / 2)
        data["step"] = step
        changes[n] = data
        renames[n] = _duplicate_blocks(n, entry)
    return _rebuild(model, "interpolate", changes, renames)


def _fold(model):
    spec = _spec(model, "fold")
    folded = [n for n, st in enumerate(spec.stages) if st.step.learn != "none" and not st.step.frozen]
    if not folded:
        raise TransformError("fold: no stage learns its step size (step.learn), so there is nothing to fold")
    values = {key: value for key, value in _step_values(model).items() if key[0] in folded}
    changes = {}
    for n in folded:
        data = _stage_data(spec, n)
        step = dict(data["step"])
        step.pop("controller", None)
        step.pop("reduction", None)
        step["frozen"] = True
        data["step"] = step
        changes[n] = data
    fixed = {f"{naming.block(n, b)}.h": value for (n, b), value in values.items()}
    return _rebuild(model, "fold", changes, {}, fixed)


# ---------------------------------------------------------------- weight maps
def _evaluation_order(n: int, old, old_blocks: int, new) -> Rename:
    """New (block b, evaluation i) takes the F at the same flat evaluation index of the old stage.

    The flat index of (b, i) is b * s + i - 1 for an RK method; a multistep method's start-up blocks hold more
    evaluations than its steps (`integrators.first_evaluation`).
    """
    from rkcompile.integrators import block_stages, first_evaluation

    where = [(b, i) for b in range(old_blocks) for i in range(1, block_stages(old, b) + 1)]

    def rename(key: str) -> tuple[str, float]:
        p = naming.parse(key)
        if p.kind != "eval" or p.stage != n:
            return key, 1  # entry, stage-wide controller, or a per-block h (the block count is unchanged)
        assert p.block is not None and p.evaluation is not None, "an evaluation's path names its block and index"
        f = first_evaluation(new, p.block) + p.evaluation - 1
        b, i = where[f] if f < len(where) else (f, 1)
        return f"{naming.evaluation(n, b, i)}.{p.rest}", 1

    return rename


def _split_pieces(n: int, factor: int) -> Rename:
    """Child piece p takes parent piece p // factor."""

    def rename(key: str) -> tuple[str, float]:
        p = naming.parse(key)
        if p.kind != "piece" or p.stage != n:
            return key, 1
        assert p.piece is not None, "a piece's path names its index"
        return f"{naming.piece(n, p.piece // factor)}.{p.rest}", 1

    return rename


def basis_data(functions: str, size: int) -> dict:
    """The spec data of a basis of `size` functions of a family."""
    if functions == "legendre":
        return {"kind": "basis", "functions": functions, "degree": size - 1}
    if functions == "constant":
        return {"kind": "basis", "pieces": size}
    return {"kind": "basis", "functions": functions, "pieces": size}


def combine_pieces(n: int, matrix) -> Rename:
    """New piece q takes sum_p matrix[q][p] * old piece p (a list of (old key, weight) for `_rebuild`)."""

    def rename(key: str):
        p = naming.parse(key)
        if p.kind != "piece" or p.stage != n:
            return key, 1
        terms = [(f"{naming.piece(n, j)}.{p.rest}", float(w)) for j, w in enumerate(matrix[p.piece]) if w != 0]
        return terms or [(f"{naming.piece(n, 0)}.{p.rest}", 0.0)], 1

    return rename


def _duplicate_blocks(n: int, entry: bool) -> Rename:
    """New block b takes old block b // 2; after an entry, old blocks 0, 0, 0, 1, 1, 2, 2, ... (Chang et al. 2018)."""

    def rename(key: str) -> tuple[str, float]:
        p = naming.parse(key)
        if p.block is None or p.stage != n:
            return key, 1
        old = max(0, (p.block - 1) // 2) if entry else p.block // 2
        moved = naming.ModulePath(p.kind, n, old, p.evaluation, p.piece, p.part, p.rest)
        return str(moved), 0.5 if p.kind == "block" and p.rest == "h" else 1

    return rename


def _rebuild(model, what: str, changes: dict[int, dict], renames: dict[int, Rename], fixed: dict | None = None):
    """Compile the changed spec and fill the new model from the old state_dict through `renames`."""
    try:
        new = build(model.spec, {f"stages.{n}": data for n, data in changes.items()})
    except SpecError as e:
        raise TransformError(f"{what}: {e.path + ': ' if e.path else ''}{_one_line(e.message)}") from None
    except RkcompileError as e:
        raise TransformError(f"{what}: {_one_line(e)}") from None
    from rkcompile.cautions import warn

    warn(new.spec, what)  # e.g. remanifested to steps that straddle basis pieces
    old, fixed = model.state_dict(), fixed or {}
    state, sources = {}, {}
    for key, target in new.state_dict().items():
        stage = naming.parse(key).stage
        rename = renames.get(stage) if stage is not None else None
        source, factor = rename(key) if rename else (key, 1)
        if key in fixed:
            state[key] = fixed[key].detach().clone()
        elif isinstance(source, list):  # a linear combination of old tensors (refined or projected bases)
            state[key] = _combination(what, key, source, old, target)
            source = source[0][0]
        elif source in old and old[source].shape == target.shape:
            state[key] = old[source].clone() if factor == 1 else old[source] * factor
        elif naming.parse(key).kind == "block" and naming.parse(key).rest in _COEFFICIENTS and source not in old:  # a multistep scheme's learnable k_n or γ_n that
            state[key] = target.clone()  # the old scheme did not have starts at its initial value
        else:  # the model was changed by hand after it was built: its weights no longer match its spec
            raise TransformError(f"{what}: the input model has no weights '{source}' of shape "
                                 f"{tuple(target.shape)} for '{key}'; was it modified after it was built?")
        if source in old:
            sources[key] = source
    new.load_state_dict(state, strict=True, assign=True)
    new.train(model.training)
    return new, sources


def _combination(what: str, key: str, terms: list, old: dict, target: torch.Tensor) -> torch.Tensor:
    """sum_j w_j old[k_j]; an integer tensor (BatchNorm's batch count) comes from the term of largest weight."""
    for source, _ in terms:
        if source not in old or old[source].shape != target.shape:
            raise TransformError(f"{what}: the input model has no weights '{source}' of shape "
                                 f"{tuple(target.shape)} for '{key}'; was it modified after it was built?")
    if not old[terms[0][0]].is_floating_point():
        return old[max(terms, key=lambda t: abs(t[1]))[0]].clone()
    out = old[terms[0][0]] * terms[0][1]
    for source, w in terms[1:]:
        out = out + old[source] * w
    return out


def _step_values(model: fx.GraphModule) -> dict[tuple[int, int], torch.Tensor]:
    """Each block's step-size tensor (the value multiplied into every k), computed by the model's own nodes."""
    steps: dict[tuple[int, int], fx.Node] = {}
    for node in model.graph.nodes:
        rk = graphmeta.get(node)
        if rk is not None and rk.role is Role.SCALE:
            assert rk.stage is not None and rk.block is not None, "a scale node belongs to a block"
            steps.setdefault((rk.stage, rk.block), node.args[1])
    needed, todo = set(), list(steps.values())
    while todo:
        node = todo.pop()
        if node not in needed:
            needed.add(node)
            todo.extend(node.all_input_nodes)
    graph = fx.Graph()
    env: dict[fx.Node, fx.Node] = {}
    for node in model.graph.nodes:  # in order, so that inputs come first
        if node in needed:
            env[node] = graph.node_copy(node, lambda x: env[x])
    graph.output(tuple(env[node] for node in steps.values()))
    with torch.no_grad():
        values = fx.GraphModule(model, graph)()
    return {key: value.detach().clone() for key, value in zip(steps, values, strict=True)}


# ---------------------------------------------------------------- helpers
def _spec(model, what: str):
    spec = getattr(model, "spec", None)
    if spec is None or not isinstance(model, fx.GraphModule):
        raise TransformError(f"{what}: expected a model compiled by rkcompile (a GraphModule with a spec)")
    return spec


def _select(spec, stage, what: str, reason: Callable) -> list[int]:
    """The stages to transform: `stage` if it qualifies, else every stage that does (an error if none does)."""
    count = len(spec.stages)
    if stage is not None:
        if isinstance(stage, bool) or not isinstance(stage, int) or not 0 <= stage < count:
            raise TransformError(f"{what}: no stage {stage!r}; the model has stages 0 to {count - 1}")
        why = reason(spec.stages[stage])
        if why:
            raise TransformError(f"{what}: stage {stage} {why}")
        return [stage]
    chosen = [n for n, st in enumerate(spec.stages) if not reason(st)]
    if not chosen:
        reasons: dict[str, list[str]] = {}
        for n, st in enumerate(spec.stages):
            reasons.setdefault(reason(st), []).append(str(n))
        why = "; ".join(f"stage {ns[0]} {r}" if len(ns) == 1 else f"stages {', '.join(ns)} {_plural(r)}"
                        for r, ns in reasons.items())
        raise TransformError(f"{what}: no stage to transform: {why}")
    return chosen


def _stage_data(spec, n: int) -> dict:
    return copy.deepcopy(spec.data["stages"][n])


def _keep_interval(data: dict, st) -> None:
    """Rewrite a step given by h (or the default h = 1) as T = h * steps, so that new steps keep [0, T]."""
    step = dict(data.get("step") or {})
    if "T" not in step:
        step.pop("h", None)
        step["T"] = format_coefficient(st.h * st.blocks)
        data["step"] = step


def _as_data(integrator):
    """The spec's `integrator` field for a `Tableau` object: its name when it is the registered one of that name,
    else the inline mapping of its coefficients as written; names and mappings pass through."""
    from rkcompile.tableau import Tableau
    from rkcompile.tableaux import get_tableau as registered
    from rkcompile.tableaux import list_tableaux

    if not isinstance(integrator, Tableau):
        return integrator
    if integrator.name.lower() in list_tableaux() and registered(integrator.name) == integrator:
        return integrator.name.lower()
    text = integrator.labels
    inline = {"name": integrator.name,
              "c": list(text.c) if text else [format_coefficient(x) for x in integrator.c],
              "A": [list(r) for r in text.A] if text else [[format_coefficient(x) for x in r] for r in integrator.A],
              "b": list(text.b) if text else [format_coefficient(x) for x in integrator.b]}
    if integrator.b_error is not None:
        inline["b_error"] = [format_coefficient(x) for x in integrator.b_error]  # exact: a display text may round
    return inline


def _tableau(integrator):
    """The method an integrator name, inline-tableau mapping or Tableau stands for (as a stage resolves it),
    or a TransformError."""
    from rkcompile.integrators import resolve_integrator
    from rkcompile.tableau import Tableau

    if isinstance(integrator, Tableau):
        return integrator.pruned()  # as a stage resolves a named tableau: stages that never reach the output go
    try:
        if isinstance(integrator, dict) and _integrator_form(integrator) == "MultistepIntegrator":
            return resolve_integrator(MultistepIntegrator.model_validate(integrator))[1]
        if isinstance(integrator, (str, dict)):
            return resolve_integrator(integrator if isinstance(integrator, str) else
                                      InlineTableau.model_validate(integrator))[1]
    except RkcompileError as e:
        raise TransformError(f"remanifest: {_one_line(e)}") from None
    except ValueError as e:  # pydantic's ValidationError of an inline tableau
        first = e.errors()[0] if hasattr(e, "errors") else {"msg": str(e)}
        raise TransformError(f"remanifest: invalid inline tableau: {_one_line(first['msg']).removeprefix('Value error, ')}") from None
    raise TransformError(f"remanifest: integrator must be a tableau name or an inline tableau, "
                         f"found {type(integrator).__name__}")


def _plural(reason: str) -> str:
    return "have" + reason[3:] if reason.startswith("has ") else reason


def _one_line(error: object) -> str:
    return " ".join(str(error).split())
