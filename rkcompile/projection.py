"""`project`: a basis stage's theta(t) moved onto another basis or size by L2 projection (Queiruga et al. 2020).

The new coefficients minimise integral_0^T |theta_new(t) - theta(t)|^2 dt: theta_new = G^-1 C theta with the
mass matrix G of the new basis and the cross matrix C of new against old, both integrated exactly by
Gauss–Legendre quadrature on every cell of the two bases' breakpoints (`rkcompile.bases.quadrature`). Onto a
richer basis that contains the old one (more pieces of a multiple, FEM nodes of a refinement, a higher degree)
the projection is exact. Every tensor of F is projected, BatchNorm's running statistics too (they are
coefficients in the same basis, see `rkcompile.mixing`).
"""

from __future__ import annotations

from rkcompile.bases import BASES, projection
from rkcompile.errors import RkcompileError, TransformError
from rkcompile.weights import Basis

__all__ = ["project"]


def project(model, functions: str | None = None, pieces: int | None = None, degree: int | None = None,
            stage: int | None = None):
    """theta(t) of every basis stage (or `stage`) L2-projected onto `functions` with `pieces` (or `degree`);
    an omitted family keeps the stage's own, so `project(model, pieces=2)` coarsens a basis of 4 pieces."""
    return _project(model, functions, pieces, degree, stage)[0]


def _project(model, functions=None, pieces=None, degree=None, stage=None):
    from rkcompile import transforms as tr

    spec = tr._spec(model, "project")
    if functions is None and pieces is None and degree is None:
        raise TransformError("project: give the new basis: functions and/or pieces (degree for legendre)")
    if functions is not None and functions not in BASES:
        raise TransformError(f"project: {BASES.unknown(functions)}")

    def reason(st) -> str | None:
        if isinstance(st.weights, Basis):
            return None
        return (f"has {st.weights.kind} weights: project maps a basis theta(t) onto another basis; only "
                "basis stages have one")

    changes, renames = {}, {}
    for n in tr._select(spec, stage, "project", reason):
        st, data = spec.stages[n], tr._stage_data(spec, n)
        old = st.weights
        new = _new_basis(n, old, functions, pieces, degree)
        data["weights"] = tr.basis_data(new.basis, new.size)
        renames[n] = tr.combine_pieces(n, projection(new.family, new.size, old.family, old.size).tolist())
        changes[n] = data
    return tr._rebuild(model, "project", changes, renames)


def _new_basis(n: int, old: Basis, functions, pieces, degree) -> Basis:
    """The target basis of stage n, validated like a spec's (too few nodes, degree out of range: errors)."""
    family = functions or old.basis
    if family == "legendre":
        if pieces is not None:
            raise TransformError(f"project: stage {n}: a legendre basis is sized by degree, not pieces")
        size = {"degree": old.degree if degree is None and old.basis == "legendre" else degree}
        if size["degree"] is None:
            raise TransformError(f"project: stage {n}: projecting onto legendre needs a degree")
    else:
        if degree is not None:
            raise TransformError(f"project: degree sizes a legendre basis; a {family} basis takes pieces")
        size = {"pieces": pieces if pieces is not None else old.size}
    try:
        return Basis.model_validate({"kind": "basis", "functions": family, **size})
    except RkcompileError as e:
        raise TransformError(f"project: stage {n}: {e}") from None
    except ValueError as e:
        first = e.errors()[0] if hasattr(e, "errors") else {"msg": str(e), "loc": ()}
        where = ".".join(str(x) for x in first.get("loc", ()))
        message = " ".join(str(first["msg"]).removeprefix("Value error, ").split())
        raise TransformError(f"project: stage {n}: {where + ': ' if where else ''}{message}") from None
