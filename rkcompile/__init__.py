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
from rkcompile.load import load_spec
from rkcompile.planner import CheckpointPlan, plan, tradeoff
from rkcompile.spec import Spec, Stage
from rkcompile.tableau import Tableau
from rkcompile.tableaux import get_tableau, list_tableaux
from rkcompile.transforms import fold_step_sizes, interpolate, refine, remanifest

__version__ = "0.1.0"

__all__ = [
    "ArtifactError",
    "BlockReport",
    "CheckpointPlan",
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
    "plan",
    "refine",
    "remanifest",
    "tradeoff",
]
