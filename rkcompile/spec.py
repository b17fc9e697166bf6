"""The spec language: Pydantic models of a network as stages of residual blocks (see docs/spec.md)."""

from __future__ import annotations

from fractions import Fraction
from functools import cached_property
from typing import Annotated, Literal, Union

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    NonNegativeInt,
    PositiveInt,
    PrivateAttr,
    field_validator,
    model_validator,
)

from rkcompile.errors import RkcompileError

__all__ = [
    "Spec", "Stage", "Input", "Output", "Step", "Stem",
    "Layer", "Module", "Entry", "Weights", "InlineTableau", "ACTIVATIONS",
]

ACTIVATIONS = ("relu", "tanh", "gelu", "silu", "sigmoid", "softplus", "elu", "leaky-relu", "identity", "none")
Activation = Literal["relu", "tanh", "gelu", "silu", "sigmoid", "softplus", "elu", "leaky-relu", "identity", "none"]
NormKind = Literal["batchnorm", "groupnorm", "layernorm", "none"]


def _kind_shorthand(value: object) -> object:
    """Let `weights: shared` stand for `weights: {kind: shared}` (same for entries, layers, modules)."""
    return {"kind": value} if isinstance(value, str) else value


def _kinds(*models: type) -> object:
    """The `kind` strings of these models, as a Literal type (the shorthand's JSON Schema)."""
    return Literal[tuple(k for m in models for k in m.model_fields["kind"].annotation.__args__)]


def _with_shorthand(*models: type) -> object:
    """A discriminated union on `kind` that also accepts a bare kind string, in validation and in the schema."""
    union = Annotated[Union[models], Field(discriminator="kind")]
    return Annotated[union, BeforeValidator(_kind_shorthand, json_schema_input_type=Union[_kinds(*models), union])]


def _coefficient(value: object) -> object:
    """Validate a number or exact expression such as "1/6" or "(6+sqrt(6))/15" (kept as written)."""
    from rkcompile.exact import parse_coefficient

    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise ValueError(f"expected a number or an exact expression such as \"1/6\", found {type(value).__name__}")
    try:
        parse_coefficient(value)
    except RkcompileError as e:
        raise ValueError(str(e)) from None
    return value


Coefficient = Annotated[Union[int, float, str], BeforeValidator(_coefficient)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


# ---------------------------------------------------------------- network ends
class Input(_Model):
    """The network input: an image `{channels, height, width}` or a vector `{features}`."""

    channels: PositiveInt | None = None
    height: PositiveInt | None = None
    width: PositiveInt | None = None
    features: PositiveInt | None = None

    @model_validator(mode="after")
    def _one_form(self) -> Input:
        image = (self.channels, self.height, self.width)
        if self.features is not None and any(v is not None for v in image):
            raise ValueError("give either {channels, height, width} for images or {features} for vectors, not both")
        if self.features is None and any(v is None for v in image):
            raise ValueError("expected {channels, height, width} for images or {features} for vectors")
        return self

    @property
    def is_image(self) -> bool:
        """True for image input (NCHW), False for vector input (NF)."""
        return self.features is None


class Output(_Model):
    """Classification head: global average pool (images) then a linear layer to `classes` logits."""

    classes: PositiveInt
    dropout: float = Field(0.0, ge=0.0, lt=1.0)


# ---------------------------------------------------------------- layers
class Conv(_Model):
    """A 2-d convolution with 'same' padding; `channels` defaults to the surrounding width."""

    kind: Literal["conv"]
    channels: PositiveInt | None = None
    kernel: PositiveInt = 3
    stride: PositiveInt = 1
    bias: bool = False
    groups: PositiveInt = 1


class Linear(_Model):
    """A fully connected layer; `features` defaults to the surrounding width."""

    kind: Literal["linear"]
    features: PositiveInt | None = None
    bias: bool = True


class Norm(_Model):
    """A normalisation layer over the current width (`groups` for groupnorm)."""

    kind: Literal["batchnorm", "groupnorm", "layernorm"]
    groups: PositiveInt = 32


class Act(_Model):
    """A pointwise activation."""

    kind: Activation


class Dropout(_Model):
    """Dropout with probability `p`."""

    kind: Literal["dropout"]
    p: float = Field(0.5, ge=0.0, lt=1.0)


class Pool(_Model):
    """Max or average pooling (used in stems, e.g. torchvision's 3x3 stride-2 max pool)."""

    kind: Literal["maxpool", "avgpool"]
    kernel: PositiveInt = 3
    stride: PositiveInt = 2


Layer = _with_shorthand(Conv, Linear, Norm, Act, Dropout, Pool)


# ---------------------------------------------------------------- stems
class ConvStem(_Model):
    """conv(kernel, stride) → norm → act [→ max pool]: the usual image stem."""

    kind: Literal["conv"]
    channels: PositiveInt
    kernel: PositiveInt = 3
    stride: PositiveInt = 1
    bias: bool = False
    norm: NormKind = "batchnorm"
    act: Activation = "relu"
    pool: Pool | None = None


class LayersStem(_Model):
    """A custom list of layers."""

    kind: Literal["layers"]
    layers: list[Layer] = Field(min_length=1)


Stem = Annotated[Union[ConvStem, LayersStem], Field(discriminator="kind")]


# ---------------------------------------------------------------- residual functions F
class _ResNetBlock(_Model):
    """What the ResNet residual functions share: activation form, conv bias, norm and activation kinds."""

    form: Literal["post", "pre"] = "post"
    bias: bool = False
    norm: NormKind = "batchnorm"
    act: Activation = "relu"
    after: Activation | None = None  # act applied after the residual addition; default relu for post, none for pre


class Basic(_ResNetBlock):
    """ResNet basic block: post-activation conv-norm-act-conv-norm, or pre-activation norm-act-conv-norm-act-conv."""

    kind: Literal["basic"]
    kernel: PositiveInt = 3


class Bottleneck(_ResNetBlock):
    """ResNet bottleneck: 1x1 reduce to `width` (default channels/expansion), 3x3, 1x1 expand."""

    kind: Literal["bottleneck"]
    expansion: PositiveInt = 4
    width: PositiveInt | None = None


class Mlp(_Model):
    """Multilayer perceptron on vectors: linear → act for each hidden width, then linear back to the state."""

    kind: Literal["mlp"]
    hidden: list[PositiveInt] = Field(min_length=1)
    act: Activation = "tanh"
    bias: bool = True
    after: Activation | None = None


class Layers(_Model):
    """A custom residual function: any list of layers that maps the state back to its own shape."""

    kind: Literal["layers"]
    layers: list[Layer] = Field(min_length=1)
    after: Activation | None = None


Module = Annotated[Union[Basic, Bottleneck, Mlp, Layers], Field(discriminator="kind")]


# ---------------------------------------------------------------- stage entries
class NoEntry(_Model):
    """The stage keeps the incoming width and resolution."""

    kind: Literal["none"]


class Transition(_Model):
    """ResNet transition block: one residual block with `stride`; shortcut zero-pad (parameter-free) or 1x1 conv + norm."""

    kind: Literal["transition"]
    stride: PositiveInt = 2
    shortcut: Literal["zero-pad", "conv"] = "zero-pad"


class Stitch(_Model):
    """ContinuousNet stitch: out = conv1x1_stride(x) + epsilon * R(x), R the stage's F with `stride`."""

    kind: Literal["stitch"]
    stride: PositiveInt = 2
    epsilon: Coefficient = 1


Entry = _with_shorthand(NoEntry, Transition, Stitch)


# ---------------------------------------------------------------- weights and steps
class PerEvaluation(_Model):
    """Every evaluation of F has its own weights (ResNet, HO-ResNet): E x |F| parameters."""

    kind: Literal["per-evaluation"]


class Shared(_Model):
    """One F for every evaluation (a fixed-grid neural ODE): 1 x |F| parameters."""

    kind: Literal["shared"]


class Basis(_Model):
    """ContinuousNet: theta(t) piecewise constant on M pieces of [0, T]; M x |F| parameters."""

    kind: Literal["basis"]
    pieces: PositiveInt


Weights = _with_shorthand(PerEvaluation, Shared, Basis)


class Step(_Model):
    """Step size: fixed `h`, or `T` with h = T / steps; `epsilon` scales F; `learn` makes h a parameter.

    `controller: fc | lstm` (Yang et al. 2020's TSC_2fc / TSC_LSTM, with `learn: channel`) computes each block's
    per-channel step as h * sigmoid(controller(projected weights of the block's F)), the hidden width being
    channels / `reduction`; `frozen: true` keeps learned steps as constants (buffers), as after folding.
    """

    h: Coefficient | None = None
    T: Coefficient | None = None
    epsilon: Coefficient = 1
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

    @model_validator(mode="after")
    def _valid(self) -> InlineTableau:
        try:
            self.to_tableau()
        except RkcompileError as e:
            raise ValueError(str(e)) from None
        return self

    def to_tableau(self):
        """Build (and so validate) the Tableau this entry describes."""
        from rkcompile.tableau import Tableau

        return Tableau.from_text(
            self.name, self.c, self.A, self.b, b_error=self.b_error, b_embedded=self.b_embedded, source=self.source
        )


# ---------------------------------------------------------------- stage and spec
class Stage(_Model):
    """A run of residual blocks integrating dy/dt = F(y, t) with one tableau and one weight layout.

    `lowering` picks how each step becomes graph nodes: `accumulate` (each stage input summed from the k_j it
    uses, k_j kept until its last use), `registers` (only a basis of what later stages still need), or `auto`
    (registers where they keep fewer activations alive). `checkpoint` lists groups of consecutive blocks
    [first, last] recomputed in backward instead of saved (as `rkcompile plan` writes them).
    """

    name: str | None = None
    channels: PositiveInt | None = None
    features: PositiveInt | None = None
    entry: Entry = NoEntry(kind="none")
    module: Module
    integrator: Union[str, InlineTableau] = "euler"
    evaluations: PositiveInt | None = None
    steps: PositiveInt | None = None
    weights: Weights = PerEvaluation(kind="per-evaluation")
    step: Step = Step()
    lowering: Literal["auto", "accumulate", "registers"] = "auto"
    checkpoint: list[tuple[NonNegativeInt, NonNegativeInt]] | None = None

    @field_validator("integrator")
    @classmethod
    def _known_tableau(cls, value: object) -> object:
        if isinstance(value, str):
            from rkcompile.tableaux import get_tableau

            try:
                get_tableau(value)
            except RkcompileError as e:
                raise ValueError(str(e)) from None
        return value

    @model_validator(mode="after")
    def _counts(self) -> Stage:
        if (self.evaluations is None) == (self.steps is None):
            raise ValueError("give exactly one of 'evaluations' (a budget of F evaluations) or 'steps'")
        if (self.channels is not None) and (self.features is not None):
            raise ValueError("give 'channels' (images) or 'features' (vectors), not both")
        return self

    @property
    def width(self) -> int | None:
        """The stage's channels (images) or features (vectors), if given."""
        return self.channels if self.channels is not None else self.features

    @cached_property
    def tableau(self):
        """The stage's tableau with stages that never reach the output pruned."""
        from rkcompile.tableaux import get_tableau

        t = get_tableau(self.integrator) if isinstance(self.integrator, str) else self.integrator.to_tableau()
        return t.pruned()

    @property
    def h(self) -> Fraction | float:
        """The step size h (before any learned scaling)."""
        from rkcompile.exact import parse_coefficient

        if self.step.T is not None:
            return parse_coefficient(self.step.T) / self.blocks
        return parse_coefficient(self.step.h) if self.step.h is not None else Fraction(1)

    @property
    def blocks(self) -> int:
        """Number of blocks (integrator steps); assumes a budget that divides, checked by `check_spec`."""
        if self.steps is not None:
            return self.steps
        return self.evaluations // self.tableau.stages

    @property
    def total_evaluations(self) -> int:
        """Number of F evaluations in the stage (blocks x stages of the pruned tableau)."""
        return self.blocks * self.tableau.stages


class Spec(_Model):
    """A whole network: input, optional stem, stages of residual blocks, optional classification head."""

    name: str = Field(min_length=1)
    seed: int | None = None
    input: Input
    stem: Stem | None = None
    stages: list[Stage] = Field(min_length=1)
    output: Output | None = None

    _source: object = PrivateAttr(default=None)

    def error(self, path: tuple, message: str, cls=None):
        """A located error (SpecError or subclass `cls`) at `path` in this spec's YAML source."""
        from rkcompile.errors import SpecError
        from rkcompile.source import format_path

        cls = cls or SpecError
        if self._source is None:
            return cls(message, path=format_path(path))
        line, column = self._source.locate(path)
        return cls(message, file=self._source.file, line=line, column=column, path=format_path(path))

    @property
    def data(self) -> dict:
        """The spec as plain data (what the YAML said, with any overrides applied)."""
        return self._source.data if self._source is not None else self.model_dump(exclude_none=True)
