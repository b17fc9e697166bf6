"""The spec language: Pydantic models of a network as stages of residual blocks (see docs/spec.md).

The open vocabularies (residual functions, layers, entries, stems, heads, weight modes, integrator families)
live in their own modules, each a `Registry` of kinds; the fields here dispatch on `kind` through them, so a
kind registered later validates like a built-in one. Validation is complete: every `Spec`, however made, has
its integrators resolved and its network planned (`planning.plan_network`).
"""

from __future__ import annotations

from fractions import Fraction
from typing import TYPE_CHECKING, Annotated, Any, Literal, Union

from pydantic import Discriminator, Field, PrivateAttr, Strict, Tag, field_validator, model_validator
from pydantic.json_schema import JsonDict

from rkcompile import sequences  # noqa: F401  (registers the sequence stems, heads and entries)
from rkcompile.conditioning import TIMES, NoTime, TimeInput
from rkcompile.entries import ENTRIES, NoEntry, StageEntry, Stitch, Transition
from rkcompile.errors import RkcompileError
from rkcompile.fields import ACTIVATIONS, Coefficient, Kind, PositiveInt
from rkcompile.fields import Model as _Model
from rkcompile.functions import FUNCTIONS, ResidualFunction
from rkcompile.functions.basic import Basic
from rkcompile.functions.bottleneck import Bottleneck
from rkcompile.functions.layers import Layers
from rkcompile.functions.mlp import Mlp
from rkcompile.heads import HEADS, Classifier, HeadKind
from rkcompile.layers import LAYERS, Act, Conv, Dropout, Linear, Norm, Pool
from rkcompile.layers import Layer as _LayerBase
from rkcompile.multistep_family import MultistepIntegrator
from rkcompile.shapes import PlanError
from rkcompile.stage_options import DROP_PATH_SCHEMA, DropPath, Init
from rkcompile.stems import STEMS, ConvStem, LayersStem, StemKind
from rkcompile.weights import WEIGHTS, Basis, PerEvaluation, Shared, WeightMode

if TYPE_CHECKING:
    from rkcompile.source import Source

__all__ = [
    "Spec", "Stage", "Input", "Output", "Step", "Stem",
    "Layer", "Module", "Entry", "Weights", "Time", "InlineTableau", "ACTIVATIONS",
    "Basic", "Bottleneck", "Mlp", "Layers", "NoEntry", "Transition", "Stitch", "PerEvaluation", "Shared", "Basis",
    "ConvStem", "LayersStem", "Conv", "Linear", "Norm", "Act", "Dropout", "Pool", "Classifier",
]

Module = Annotated[ResidualFunction, Kind(FUNCTIONS)]
Layer = Annotated[_LayerBase, Kind(LAYERS)]
Entry = Annotated[StageEntry, Kind(ENTRIES)]
Stem = Annotated[StemKind, Kind(STEMS)]
Weights = Annotated[WeightMode, Kind(WEIGHTS)]
Time = Annotated[TimeInput, Kind(TIMES)]
Output = Annotated[HeadKind, Kind(HEADS, default="classifier")]
#: 0 <= seed < 2**63 (torch.manual_seed's range), strict: `seed: true` is an error.
Seed = Annotated[int, Strict(), Field(ge=0, lt=2**63)]


class Input(_Model):
    """The network input: an image `{channels, height, width}`, a vector `{features}`, a 1-d signal
    `{channels, length}`, a token sequence `{length, features}`, or integer tokens `{length, vocabulary}`."""

    channels: PositiveInt | None = None
    height: PositiveInt | None = None
    width: PositiveInt | None = None
    features: PositiveInt | None = None
    length: PositiveInt | None = None
    vocabulary: PositiveInt | None = None

    @model_validator(mode="after")
    def _one_form(self) -> Input:
        given = tuple(name for name in _INPUT_FIELDS if getattr(self, name) is not None)
        if given not in _INPUT_FORMS:
            forms = ", ".join("{" + ", ".join(form) + "} for " + what for form, what in _INPUT_FORMS.items())
            raise ValueError(f"give either {forms}; found {{{', '.join(given)}}}")
        return self

    @property
    def state(self) -> str:
        """image, vector, signal or tokens (integer tokens are tokens)."""
        form = _INPUT_FORMS[tuple(n for n in _INPUT_FIELDS if getattr(self, n) is not None)]
        return {"images": "image", "vectors": "vector", "integer tokens": "tokens"}.get(form, form)

    @property
    def is_image(self) -> bool:
        """True for image input (NCHW)."""
        return self.state == "image"

    @property
    def integer(self) -> bool:
        """True for integer token ids (a `vocabulary`): the input tensor is N x L of int64."""
        return self.vocabulary is not None

    def tensor_shape(self, batch: int) -> tuple[int, ...]:
        """The input tensor's shape with the batch: NCHW, NF, NCL, NLF or NL (token ids)."""
        if self.state == "image":
            return (batch, *_given(self.channels, self.height, self.width))
        if self.state == "signal":
            return (batch, *_given(self.channels, self.length))
        if self.integer:
            return (batch, *_given(self.length))
        if self.state == "tokens":
            return (batch, *_given(self.length, self.features))
        return (batch, *_given(self.features))


def _given(*sizes: int | None) -> tuple[int, ...]:
    """The sizes of an input form, all given (`Input._one_form` checked the form at validation)."""
    out = tuple(n for n in sizes if n is not None)
    assert len(out) == len(sizes), "validation admits only complete input forms"
    return out


_INPUT_FIELDS = ("channels", "height", "width", "features", "length", "vocabulary")
_INPUT_FORMS = {("channels", "height", "width"): "images", ("features",): "vectors", ("channels", "length"): "signal",
                ("features", "length"): "tokens", ("length", "vocabulary"): "integer tokens"}  # fields in _INPUT_FIELDS order


class Step(_Model):
    """Step size: fixed `h`, or `T` with h = T / steps; `epsilon` scales F; `learn` makes h a parameter.

    `controller: fc | lstm` (Yang et al. 2020's TSC_2fc / TSC_LSTM, with `learn: channel`) computes each block's
    per-channel step as h * sigmoid(controller(projected weights of the block's F)), the hidden width being
    channels / `reduction`; `frozen: true` keeps learned steps as constants (buffers), as after folding.
    """

    h: Coefficient | None = None
    T: Coefficient | None = None
    epsilon: Coefficient = Field(default=1, validate_default=True)
    learn: Literal["none", "scalar", "channel"] = "none"
    skip_init: bool = False
    controller: Literal["none", "fc", "lstm"] = "none"
    reduction: PositiveInt = 4
    frozen: bool = False

    @model_validator(mode="after")
    def _h_or_T(self) -> Step:
        if self.h is not None and self.T is not None:
            raise ValueError("give either 'h' or 'T' (h = T / steps), not both")
        if self.controller != "none" and self.learn != "channel":
            raise ValueError(f"a step-size controller ('{self.controller}') gives one step per channel: it needs "
                             f"'learn: channel', found 'learn: {self.learn}'")
        if "reduction" in self.model_fields_set and self.controller == "none":
            raise ValueError("'reduction' sets a controller's hidden width: it needs 'controller: fc' or 'lstm'")
        if self.frozen and self.learn == "none":
            raise ValueError("'frozen: true' keeps learned step sizes constant: it needs 'learn: scalar' or 'channel'")
        if self.frozen and self.controller != "none":
            raise ValueError(f"a frozen step has no controller: remove 'controller: {self.controller}' "
                             "(fold_step_sizes does both)")
        return self


class InlineTableau(_Model):
    """A Butcher tableau written in the spec: c, A (full or lower-triangular rows), b, optional embedded weights."""

    name: str = "inline"
    c: list[Coefficient]
    A: list[list[Coefficient]]
    b: list[Coefficient]
    b_error: list[Coefficient] | None = None
    b_embedded: list[Coefficient] | None = None
    source: str = ""

    _tableau: object = PrivateAttr(default=None)

    @model_validator(mode="after")
    def _valid(self) -> InlineTableau:
        from rkcompile.tableau import Tableau

        try:  # the coefficients are Exact values: their text and value, parsed once when validated
            self._tableau = Tableau.from_text(self.name, self.c, self.A, self.b, b_error=self.b_error,
                                              b_embedded=self.b_embedded, source=self.source)
        except RkcompileError as e:
            raise ValueError(str(e)) from None
        return self

    def to_tableau(self):
        """The Tableau this entry describes (built, and so validated, once at validation)."""
        return self._tableau


def _integrator_form(value: object) -> str:
    """Which form an `integrator` value is: a name, an inline tableau, or a multistep mapping."""
    if isinstance(value, str):
        return "str"
    if isinstance(value, MultistepIntegrator) or (
            isinstance(value, dict) and set(value) & set(MultistepIntegrator.model_fields) - {"name", "source"}):
        return "MultistepIntegrator"
    return "InlineTableau"


Integrator = Annotated[Union[Annotated[str, Tag("str")], Annotated[InlineTableau, Tag("InlineTableau")],
                             Annotated[MultistepIntegrator, Tag("MultistepIntegrator")]],
                       Discriminator(_integrator_form)]


#: A block of a stage, counted from 0 (checkpoint groups name their first and last block).
BlockIndex = Annotated[int, Strict(), Field(ge=0)]


# ---------------------------------------------------------------- stage and spec
def _interleaved_schema(schema: JsonDict) -> None:
    """`module` in the JSON schema: also a list, an interleaved cycle (`Stage._interleaved`)."""
    any_of = schema.setdefault("anyOf", [])
    assert isinstance(any_of, list), "a JSON schema's anyOf is a list"
    any_of.append({"type": "array", "minItems": 2, "description": "an interleaved cycle of residual functions"})


class Stage(_Model):
    """A run of residual blocks integrating dy/dt = F(y, t) with one integrator and one weight layout.

    `lowering` picks how each step becomes graph nodes: `accumulate` (each stage input summed from the k_j it
    uses, k_j kept until its last use), `registers` (only a basis of what later stages still need), or `auto`
    (registers where they keep fewer activations alive). `checkpoint` lists groups of consecutive blocks
    [first, last] recomputed in backward instead of saved (as `rkcompile plan` writes them). `time` makes F
    depend on t (`none`, `concat`, `film`: `rkcompile.conditioning`). `backprop:
    reversible` keeps only the last two states and reconstructs the earlier ones in backward by the method's
    inverse step (`rkcompile.reversible`); `saved` is ordinary backprop.
    """

    name: str | None = None
    channels: PositiveInt | None = None
    features: PositiveInt | None = None
    entry: Entry = NoEntry(kind="none")
    module: Module = Field(json_schema_extra=_interleaved_schema)
    integrator: Integrator = "euler"
    evaluations: PositiveInt | None = None
    steps: PositiveInt | None = None
    weights: Weights = PerEvaluation(kind="per-evaluation")
    time: Time = NoTime(kind="none")
    step: Step = Step()
    lowering: Literal["auto", "accumulate", "registers"] = "auto"
    checkpoint: list[tuple[BlockIndex, BlockIndex]] | None = None
    init: Init = Init()
    drop_path: DropPath | None = Field(None, json_schema_extra=DROP_PATH_SCHEMA)
    backprop: Literal["saved", "reversible"] = "saved"

    _family: object = PrivateAttr(default=None)
    # the family's method, duck-typed: a Tableau, a multistep method, or a plugin family's (`integrators`)
    _method: Any = PrivateAttr(default=None)

    @field_validator("module", mode="before")
    @classmethod
    def _interleaved(cls, value: object) -> object:
        """`module: [attention, ffn]` is shorthand for an interleaved cycle (functions/interleaved.py)."""
        return {"kind": "interleaved", "modules": value} if isinstance(value, list) else value

    @model_validator(mode="after")
    def _resolve(self) -> Stage:
        if (self.evaluations is None) == (self.steps is None):
            raise ValueError("give exactly one of 'evaluations' (a budget of F evaluations) or 'steps'")
        if (self.channels is not None) and (self.features is not None):
            raise ValueError("give 'channels' (images) or 'features' (vectors), not both")
        from rkcompile.integrators import resolve_integrator

        try:
            self._family, self._method = resolve_integrator(self.integrator)
        except RkcompileError as e:
            raise PlanError(str(e), ("integrator",), compile=False) from None
        self._check_budget()
        self._check_checkpoint()
        if self.backprop == "reversible":
            from rkcompile.backprop import check_reversible

            check_reversible(self)
        return self

    def _check_budget(self) -> None:
        for field in ("h", "T"):
            value = getattr(self.step, field)
            if value is not None and value.value <= 0:
                raise PlanError(f"the step size must be positive, found {value}", ("step", field))
        method = self._method
        if hasattr(method, "budget_error"):  # a method whose start-up blocks differ from its steps
            blocks = self.steps if self.steps is not None else method.blocks_for(self.evaluations)
            problem = method.budget_error(blocks, self.evaluations)
            if problem is not None:
                raise PlanError(problem, ("evaluations" if self.evaluations is not None else "steps",))
            if self.step.learn != "none":
                raise PlanError(f"a learnable step size scales each block of an RK integrator; {method.name} carries "
                                "history from step to step: use 'learn: none'", ("step", "learn"))
        elif self.evaluations is not None and self.evaluations % method.stages:
            from rkcompile.planning import nearest_budgets

            valid = nearest_budgets(self.evaluations, method.stages)
            raise PlanError(f"a budget of {self.evaluations} evaluations does not divide into blocks of "
                            f"{method.stages} ({method.name} evaluates F {method.stages} times per step); nearest "
                            f"valid budgets: {', '.join(map(str, valid))}", ("evaluations",))
        cycle = len(self.module.cycle())
        if cycle > 1 and self.weights.kind != "per-evaluation":
            raise PlanError(f"an interleaved module (a list of {cycle}) cycles over evaluations with their own weights: "
                            f"it needs 'weights: per-evaluation', found '{self.weights.kind}'", ("weights",))
        if cycle > 1 and self.total_evaluations % cycle:
            field = "evaluations" if self.evaluations is not None else "steps"
            raise PlanError(f"{self.total_evaluations} evaluations do not cycle evenly over the {cycle} interleaved "
                            f"modules; use a multiple of {cycle} (and of {method.stages} per step)", (field,))
        if self.step.learn != "none" and self.time.active:
            raise PlanError(f"time: {self.time.kind} gives F the nominal time t_n + c_i h, which learned step sizes "
                            "would change; use 'learn: none' (or 'time: none')", ("time",))
        if self.step.learn != "none" and not self.weights.per_block:
            raise PlanError(f"a learnable step needs per-evaluation weights (one step size per block); with "
                            f"'{self.weights.kind}' weights h = T/steps stays fixed", ("step", "learn"))

    def _check_checkpoint(self) -> None:
        """Checkpoint groups: [first, last] block ranges inside the stage, in order and not overlapping; only
        Runge–Kutta blocks (a multistep block hands on its history of earlier states, not one state)."""
        end, blocks = -1, self.blocks
        family = getattr(self._family, "name", "rk")
        if self.checkpoint and family != "rk" and self.backprop != "reversible":  # (that has its own message)
            raise PlanError(f"checkpoint groups recompute Runge–Kutta blocks; this stage is a {family} method whose "
                            "blocks hand on earlier states too: use 'backprop: reversible' (leapfrog, momentum, "
                            "second-order) to save memory here", ("checkpoint",))
        for g, (first, last) in enumerate(self.checkpoint or ()):
            where = ("checkpoint", g)
            if first > last:
                raise PlanError(f"a group is [first, last] with first <= last, found [{first}, {last}]", where)
            if last >= blocks:
                raise PlanError(f"block {last} does not exist: the stage has {blocks} block"
                                f"{'s' if blocks > 1 else ''} (0 to {blocks - 1})", where)
            if first <= end:
                raise PlanError(f"group [{first}, {last}] overlaps or precedes the group before it (which ends "
                                f"at block {end}); list groups in block order", where)
            end = last

    @property
    def width(self) -> int | None:
        """The stage's channels (images) or features (vectors), if given."""
        return self.channels if self.channels is not None else self.features

    @property
    def tableau(self):
        """The stage's method, resolved at validation (for the rk family: the tableau, unreachable stages pruned)."""
        return self._method

    @property
    def family(self):
        """The integrator family that resolved the stage's method and lowers its steps."""
        return self._family

    @property
    def h(self) -> Fraction | float:
        """The step size h (before any learned scaling)."""
        if self.step.T is not None:
            return self.step.T.value / self.blocks
        return self.step.h.value if self.step.h is not None else Fraction(1)

    @property
    def blocks(self) -> int:
        """Number of blocks (integrator steps); the budget divides, checked at validation."""
        if self.steps is not None:
            return self.steps
        if hasattr(self.tableau, "blocks_for"):
            return self.tableau.blocks_for(self.evaluations)
        return self.evaluations // self.tableau.stages

    @property
    def total_evaluations(self) -> int:
        """Number of F evaluations in the stage (blocks x stages of the pruned tableau; start-up steps included)."""
        if hasattr(self.tableau, "evaluations_for"):
            return self.tableau.evaluations_for(self.blocks)
        return self.blocks * self.tableau.stages


class Spec(_Model):
    """A whole network: input, optional stem, stages of residual blocks, optional head."""

    name: str = Field(min_length=1)
    seed: Seed | None = None
    input: Input
    stem: Stem | None = None
    stages: list[Stage] = Field(min_length=1)
    output: Output | None = None

    _source: Source | None = PrivateAttr(default=None)
    _plan: object = PrivateAttr(default=None)

    @model_validator(mode="after")
    def _planned(self) -> Spec:
        from rkcompile.planning import plan_network

        self._plan = plan_network(self)
        return self

    @property
    def plan(self):
        """The network planned at validation: every part's layers and shapes (`planning.NetworkPlan`)."""
        return self._plan

    def error(self, path: tuple, message: str, cls=None):
        """A located error (SpecError or subclass `cls`) at `path` in this spec's YAML source."""
        from rkcompile.errors import SpecError
        from rkcompile.source import format_path

        cls = cls or SpecError
        if self._source is None:
            return cls(message, path=format_path(path))
        return self._source.error(path, message, cls)

    @property
    def data(self) -> dict:
        """The spec as plain data (what the YAML said, with any overrides applied)."""
        if self._source is None:
            return self.model_dump(exclude_unset=True, mode="json")
        data = self._source.data
        assert isinstance(data, dict), "load validates a source only when its data is a mapping"
        return data
