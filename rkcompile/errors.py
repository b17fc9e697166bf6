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
    "PluginError",
    "PluginWarning",
    "did_you_mean",
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


def did_you_mean(word: object, choices: Iterable[str]) -> str:
    """Return ' (did you mean 'x'?)' for the nearest choice, or '' when nothing is close."""
    close = difflib.get_close_matches(str(word), [str(c) for c in choices], n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else ""
