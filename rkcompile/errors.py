"""One exception hierarchy for every error rkcompile reports to a user."""

from __future__ import annotations

import difflib
from collections.abc import Iterable

__all__ = [
    "RkcompileError",
    "SpecError",
    "TableauError",
    "CompileError",
    "ArtifactError",
    "TransformError",
    "ExportError",
    "RkcompileWarning",
    "PluginError",
    "PluginWarning",
    "did_you_mean",
    "ALIASES",
]


class RkcompileError(Exception):
    """Base class of every error rkcompile raises on bad input."""


class SpecError(RkcompileError):
    """A spec is not valid: carries the file, line, column and field path of the offending YAML node."""

    def __init__(
        self,
        message: str,
        *,
        file: str | None = None,
        line: int | None = None,
        column: int | None = None,
        path: str = "",
    ) -> None:
        self.message = " ".join(str(message).splitlines())  # one line, whatever the user's input held
        self.file = file
        self.line = line
        self.column = column
        self.path = path
        super().__init__(self.located())

    def located(self) -> str:
        """Render as `FILE:LINE:COL: path: message` (parts that are unknown are left out)."""
        where = self.file or "<spec>"
        if self.line is not None:
            where += f":{self.line}:{self.column or 1}"
        field = f" {self.path}:" if self.path else ""
        return f"{where}:{field} {self.message}"


class TableauError(RkcompileError):
    """A Butcher tableau is malformed (shape, not explicit, row sums, consistency) or unknown."""


class CompileError(SpecError):
    """A valid spec cannot be compiled to a network (e.g. an indivisible evaluation budget); located like SpecError."""


class ArtifactError(RkcompileError):
    """A saved model file is missing, foreign, tampered with or otherwise unreadable."""


class TransformError(RkcompileError):
    """A model transformation (remanifest, refine, interpolate, fold) does not apply to this model."""


class ExportError(RkcompileError):
    """A model cannot be exported (unknown format, missing ONNX packages, or the exporter failed)."""


class PluginError(RkcompileError, ValueError):
    """A plugin registers a kind whose name is already taken (by rkcompile or another plugin); names both."""


class PluginWarning(UserWarning):
    """A plugin of the `rkcompile.plugins` entry-point group failed to load and was skipped."""


class RkcompileWarning(UserWarning):
    """A valid spec that probably does not do what its author meant: one located line (`FILE:LINE:COL: path: ...`);
    the CLI prints it as `warning: ...`."""


#: Other names for a valid name that spelling distance does not find: long forms, other libraries' names.
ALIASES = {
    "runge-kutta-4": "rk4", "runge-kutta": "rk4", "rungekutta4": "rk4", "classic-rk4": "rk4", "rk-4": "rk4",
    "rk38": "rk4-38", "three-eighths": "rk4-38", "forward-euler": "euler", "explicit-euler": "euler",
    "improved-euler": "heun", "heun2": "heun", "rk2": "midpoint", "explicit-midpoint": "midpoint",
    "bogacki-shampine": "bs3", "fehlberg": "rkf45", "dormand-prince": "dopri5", "dopri": "dopri5", "dp5": "dopri5",
    "tsitouras": "tsit5", "verner": "verner89", "rk8": "verner89", "dop853": "pd8", "prince-dormand": "pd8",
    "adams-bashforth": "ab2", "swish": "silu", "silu-swish": "silu", "lrelu": "leaky-relu", "leakyrelu": "leaky-relu",
    "leaky_relu": "leaky-relu", "bn": "batchnorm", "batch-norm": "batchnorm", "batch_norm": "batchnorm",
    "ln": "layernorm", "layer-norm": "layernorm", "layer_norm": "layernorm", "gn": "groupnorm",
    "group-norm": "groupnorm", "rms-norm": "rmsnorm", "rms_norm": "rmsnorm", "mha": "attention", "mhsa": "attention",
    "mlp-block": "ffn", "piecewise-constant": "constant", "fem": "linear", "hat": "linear",
}


def did_you_mean(word: object, choices: Iterable[str]) -> str:
    """Return ' (did you mean 'x'?)' for a known alias or the nearest choice, or '' when nothing is close."""
    names = [str(c) for c in choices]
    key = str(word).strip().lower().replace(" ", "-")
    alias = ALIASES.get(key) or ALIASES.get(key.replace("_", "-"))
    if alias in names:
        return f" (did you mean '{alias}'?)"
    close = difflib.get_close_matches(str(word), names, n=1, cutoff=0.6)
    if not close:  # case and separators are not spelling: 'ReLU', 'leaky_relu', 'RK-4'
        folded = {n.lower().replace("-", "").replace("_", ""): n for n in names}
        hit = folded.get(key.replace("-", "").replace("_", ""))
        close = [hit] if hit else []
    return f" (did you mean '{close[0]}'?)" if close else ""
