"""Fourth-order four-stage methods: the classic RK4 and Kutta's 3/8 rule.

torchdiffeq's fixed-grid "rk4" is the 3/8 rule, not the classic method (torchdiffeq, _impl/fixed_grid.py: rk4_alt_step_func); both are here
under distinct names so that a spec says which it means.
"""

from __future__ import annotations

from rkcompile.tableau import Tableau

#: The classic Runge-Kutta method; order 4.
RK4 = Tableau.from_text(
    "rk4", c=["0", "1/2", "1/2", "1"], A=[[], ["1/2"], ["0", "1/2"], ["0", "0", "1"]],
    b=["1/6", "1/3", "1/3", "1/6"],
    source="Kutta (1901), Z Math Phys 46:435-453; the classic Runge-Kutta method, order 4",
)

#: Kutta's 3/8 rule; order 4.
RK4_38 = Tableau.from_text(
    "rk4-38", c=["0", "1/3", "2/3", "1"], A=[[], ["1/3"], ["-1/3", "1"], ["1", "-1", "1"]],
    b=["1/8", "3/8", "3/8", "1/8"],
    source="Kutta (1901), Z Math Phys 46:435-453; the 3/8 rule, order 4",
)

TABLEAUX = (RK4, RK4_38)
