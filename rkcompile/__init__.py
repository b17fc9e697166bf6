"""rkcompile: declarative YAML specs of residual networks as Runge–Kutta integrators, compiled to torch.fx."""

from rkcompile.analysis import BlockReport, Report, analyze
from rkcompile.artifact import load, save
from rkcompile.compiler import build
from rkcompile.errors import (
    ArtifactError,
    CompileError,
    RkcompileError,
    SpecError,
    TableauError,
    TransformError,
)
from rkcompile.functions import ResidualFunction, register_module
from rkcompile.load import load_spec
from rkcompile.projection import project
from rkcompile.spec import Spec, Stage
from rkcompile.tableau import Tableau
from rkcompile.tableaux import get_tableau, list_tableaux, register_tableau
from rkcompile.transforms import fold_step_sizes, interpolate, refine, remanifest

__version__ = "0.1.0"

__all__ = [
    "ArtifactError",
    "BlockReport",
    "Report",
    "analyze",
    "CompileError",
    "RkcompileError",
    "Spec",
    "SpecError",
    "Stage",
    "Tableau",
    "TableauError",
    "TransformError",
    "build",
    "load",
    "save",
    "fold_step_sizes",
    "get_tableau",
    "interpolate",
    "list_tableaux",
    "load_spec",
    "project",
    "refine",
    "remanifest",
    "register_module",
    "register_tableau",
    "ResidualFunction",
]
