"""Embedded pairs of orders 3 to 5 (b_error = b - b_embedded, the torchdiffeq/diffrax convention)."""

from __future__ import annotations

from rkcompile.tableau import Tableau

#: Bogacki-Shampine 3(2), 4 stages, FSAL; order 3, embedded 2.
BS3 = Tableau.from_text(
    "bs3", c=["0", "1/2", "3/4", "1"], A=[[], ["1/2"], ["0", "3/4"], ["2/9", "1/3", "4/9"]],
    b=["2/9", "1/3", "4/9", "0"], b_embedded=["7/24", "1/4", "1/3", "1/8"],
    source="Bogacki & Shampine (1989), A 3(2) pair of Runge-Kutta formulas, Appl Math Lett 2(4):321-325; "
           "order 3, embedded 2, FSAL",
)

#: Runge-Kutta-Fehlberg 4(5), propagating the 4th-order solution as Fehlberg intended; order 4, embedded 5.
RKF45 = Tableau.from_text(
    "rkf45", c=["0", "1/4", "3/8", "12/13", "1", "1/2"],
    A=[[], ["1/4"], ["3/32", "9/32"], ["1932/2197", "-7200/2197", "7296/2197"],
       ["439/216", "-8", "3680/513", "-845/4104"], ["-8/27", "2", "-3544/2565", "1859/4104", "-11/40"]],
    b=["25/216", "0", "1408/2565", "2197/4104", "-1/5", "0"],
    b_embedded=["16/135", "0", "6656/12825", "28561/56430", "-9/50", "2/55"],
    source="Fehlberg (1969), Low-order classical Runge-Kutta formulas with stepsize control, NASA TR R-315; "
           "order 4, embedded 5",
)

#: Cash-Karp 5(4); order 5, embedded 4.
CASH_KARP = Tableau.from_text(
    "cash-karp", c=["0", "1/5", "3/10", "3/5", "1", "7/8"],
    A=[[], ["1/5"], ["3/40", "9/40"], ["3/10", "-9/10", "6/5"], ["-11/54", "5/2", "-70/27", "35/27"],
       ["1631/55296", "175/512", "575/13824", "44275/110592", "253/4096"]],
    b=["37/378", "0", "250/621", "125/594", "0", "512/1771"],
    b_embedded=["2825/27648", "0", "18575/48384", "13525/55296", "277/14336", "1/4"],
    source="Cash & Karp (1990), A variable order Runge-Kutta method for initial value problems with rapidly varying "
           "right-hand sides, ACM TOMS 16(3):201-222; order 5, embedded 4",
)

#: Dormand-Prince 5(4) (DOPRI5), 7 stages, FSAL; order 5, embedded 4.
DOPRI5 = Tableau.from_text(
    "dopri5", c=["0", "1/5", "3/10", "4/5", "8/9", "1", "1"],
    A=[[], ["1/5"], ["3/40", "9/40"], ["44/45", "-56/15", "32/9"],
       ["19372/6561", "-25360/2187", "64448/6561", "-212/729"],
       ["9017/3168", "-355/33", "46732/5247", "49/176", "-5103/18656"],
       ["35/384", "0", "500/1113", "125/192", "-2187/6784", "11/84"]],
    b=["35/384", "0", "500/1113", "125/192", "-2187/6784", "11/84", "0"],
    b_embedded=["5179/57600", "0", "7571/16695", "393/640", "-92097/339200", "187/2100", "1/40"],
    source="Dormand & Prince (1980), A family of embedded Runge-Kutta formulae, J Comput Appl Math 6(1):19-26; "
           "order 5, embedded 4, FSAL",
)

#: Tsitouras 5(4), 7 stages, FSAL; order 5, embedded 4. The published coefficients are decimals (taken exactly
#: as written); c_5 is as published, and its row sums to it within 1e-15.
TSIT5 = Tableau.from_text(
    "tsit5", c=["0", "0.161", "0.327", "0.9", "0.9800255409045097", "1", "1"],
    A=[[], ["0.161"], ["-0.008480655492356989", "0.335480655492357"],
       ["2.8971530571054935", "-6.359448489975075", "4.3622954328695815"],
       ["5.325864828439257", "-11.748883564062828", "7.4955393428898365", "-0.09249506636175525"],
       ["5.86145544294642", "-12.92096931784711", "8.159367898576159", "-0.071584973281401", "-0.028269050394068383"],
       ["0.09646076681806523", "0.01", "0.4798896504144996", "1.379008574103742", "-3.290069515436081",
        "2.324710524099774"]],
    b=["0.09646076681806523", "0.01", "0.4798896504144996", "1.379008574103742", "-3.290069515436081",
       "2.324710524099774", "0"],
    b_embedded=["0.09468075576583945", "0.009183565540343254", "0.4877705284247616", "1.234297566930479",
                "-2.7077123499835256", "1.866628418170587", "1/66"],
    source="Tsitouras (2011), Runge-Kutta pairs of order 5(4) satisfying only the first column simplifying "
           "assumption, Comput Math Appl 62(2):770-775; order 5, embedded 4, FSAL",
)

#: In preference order: dopri5 is the one suggested for "rk5".
TABLEAUX = (BS3, RKF45, DOPRI5, CASH_KARP, TSIT5)
