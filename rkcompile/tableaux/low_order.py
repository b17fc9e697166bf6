"""Classical explicit methods of orders 1 to 3 (no embedded pair).

Coefficients as tabulated in Butcher, "Numerical Methods for Ordinary Differential Equations", 3rd ed. 2016,
Sec. 23, and Hairer, Norsett & Wanner, "Solving ODEs I", Sec. II.1; each checked by the order test.
"""

from __future__ import annotations

from rkcompile.tableau import Tableau

#: Forward Euler; order 1. One residual block y + F(y) is one step of it.
EULER = Tableau.from_text(
    "euler", c=["0"], A=[[]], b=["1"],
    source="Euler (1768), Institutionum calculi integralis; order 1",
)

#: Explicit midpoint rule; order 2.
MIDPOINT = Tableau.from_text(
    "midpoint", c=["0", "1/2"], A=[[], ["1/2"]], b=["0", "1"],
    source="Runge (1895), Ueber die numerische Aufloesung von Differentialgleichungen, Math Ann 46; explicit "
           "midpoint, order 2",
)

#: Heun's method (improved Euler, explicit trapezoidal rule); order 2.
HEUN = Tableau.from_text(
    "heun", c=["0", "1"], A=[[], ["1"]], b=["1/2", "1/2"],
    source="Heun (1900), Neue Methoden zur approximativen Integration der Differentialgleichungen, Z Math Phys 45; "
           "improved Euler / explicit trapezoidal rule, order 2",
)

#: Ralston's minimum-error second-order method (a21 = 2/3); order 2.
RALSTON = Tableau.from_text(
    "ralston", c=["0", "2/3"], A=[[], ["2/3"]], b=["1/4", "3/4"],
    source="Ralston (1962), Runge-Kutta methods with minimum error bounds, Math Comp 16:431-437; order 2",
)

#: Heun's third-order method; order 3.
HEUN3 = Tableau.from_text(
    "heun3", c=["0", "1/3", "2/3"], A=[[], ["1/3"], ["0", "2/3"]], b=["1/4", "0", "3/4"],
    source="Heun (1900), Z Math Phys 45:23-38; third-order method, order 3",
)

#: Kutta's third-order method; order 3.
KUTTA3 = Tableau.from_text(
    "kutta3", c=["0", "1/2", "1"], A=[[], ["1/2"], ["-1", "2"]], b=["1/6", "2/3", "1/6"],
    source="Kutta (1901), Beitrag zur naeherungsweisen Integration totaler Differentialgleichungen, Z Math Phys 46; "
           "order 3",
)

#: Shu-Osher strong-stability-preserving SSPRK(3,3); order 3.
SSPRK3 = Tableau.from_text(
    "ssprk3", c=["0", "1", "1/2"], A=[[], ["1"], ["1/4", "1/4"]], b=["1/6", "1/6", "2/3"],
    source="Shu & Osher (1988), Efficient implementation of essentially non-oscillatory shock-capturing schemes, "
           "J Comput Phys 77:439-471; SSPRK(3,3), order 3",
)

#: In preference order: where two share an order, the first is suggested for a name like "rk2".
TABLEAUX = (EULER, MIDPOINT, HEUN, RALSTON, HEUN3, KUTTA3, SSPRK3)
