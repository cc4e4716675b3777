"""POLLU: the chemistry of the RIVM air pollution model (Verwer 1994), 20 species, 25 reactions.

Mass-action kinetics, dy/dt = S r(y), with the reaction rates r_j = k_j times the product of the
reactants' concentrations and S the 20 x 25 stoichiometric matrix of the reactions

     1  NO2 -> NO + O3P                  10  C2O3 + NO2 -> PAN                18  O1D -> 2 OH
     2  NO + O3 -> NO2                   11  PAN -> C2O3 + NO2                19  O1D -> O3P
     3  HO2 + NO -> NO2 + OH             12  MEO2 + NO -> CH3O + NO2          20  SO2 + OH -> SO4 + HO2
     4  HCHO -> 2 HO2 + CO               13  CH3O -> HCHO + HO2               21  NO3 -> NO
     5  HCHO -> CO                       14  NO2 + OH -> HNO3                 22  NO3 -> NO2 + O3P
     6  HCHO + OH -> HO2 + CO            15  O3P -> O3                        23  NO2 + O3 -> NO3
     7  ALD -> MEO2 + HO2 + CO           16  O3 -> O1D                        24  NO3 + NO2 -> N2O5
     8  ALD + OH -> C2O3                 17  O3 -> O3P                        25  N2O5 -> NO3 + NO2
     9  C2O3 + NO -> NO2 + MEO2 + CO2

(O2, H2O and other species held constant are folded into the k_j). The rate constants k1 ... k25 =
0.35, 26.6, 1.23e4, 8.6e-4, 8.2e-4, 1.5e4, 1.3e-4, 2.4e4, 1.65e4, 9e3, 2.2e-2, 1.2e4, 1.88, 1.63e4,
4.8e6, 3.5e-4, 1.75e-2, 1e8, 4.44e11, 1.24e3, 2.1, 5.78, 4.74e-2, 1.78e3, 3.12 span 15 decades. The
initial state has NO = 0.2, O3 = 0.04, HCHO = 0.1, CO = 0.3, ALD = 0.01, SO2 = 0.007 and the
other species 0. The Test Set for IVP Solvers integrates it over [0, 60]; it states no units, so
concentrations and time are unitless here. The species are named and ordered as in the Test Set's
y1 ... y20 (names from the R package deTestSet). The reaction list is read off the rates and the
right-hand side of pollu.f (routine polfunc); the labels in comments elsewhere (e.g. deSolve's
inst/doc/examples/Pollution.R, which swaps the descriptions of reactions 7 and 8) do not enter here.

Within the first 1e-6 the radicals O1D (about 3e-17) and O3P (1e-10 to 5e-9) reach their
quasi-steady states; within about 1, NO and O3 react to NO2 until its photolysis balances them (O3
falls from 0.04 to 3.3e-3); over [1, 60] and beyond, HCHO and ALD are slowly oxidised, NO2 is
turned into HNO3 and PAN, and SO2 into SO4. The Test Set's solution at t = 60 (computed with
RADAU5 at rtol = atol = h0 = 1.1e-18 in extended precision; routine polsoln) is
`TEST_SET_SOLUTION`.

Sources: pollu.f of the Test Set for IVP Solvers (Mazzia & Magherini), revision pollu.F 1.2 as
shipped in the R package deTestSet (cran/deTestSet, src/Ex_pollution.f: polfunc, poljac, polsoln);
the rate constants, initial state and species names in cran/deTestSet R/ex_pollution.R.
"""

from __future__ import annotations

import re
from typing import Annotated

import numpy as np
from pydantic import Field

from stiffbench.api import (
    LogGrid,
    LogNormalNoise,
    ODESystem,
    Protocol,
    ReferenceSolver,
    State,
    Times,
    Window,
    windowed_params,
)

Interval = tuple[float, float]
Rate = Annotated[float, Field(gt=0)]
Concentration = Annotated[float, Field(ge=0)]

SPECIES = ("NO2", "NO", "O3P", "O3", "HO2", "OH", "HCHO", "CO", "ALD", "MEO2",
           "C2O3", "CO2", "PAN", "CH3O", "HNO3", "O1D", "SO2", "SO4", "NO3", "N2O5")

REACTIONS = (
    "NO2 -> NO + O3P", "NO + O3 -> NO2", "HO2 + NO -> NO2 + OH", "HCHO -> 2 HO2 + CO", "HCHO -> CO",
    "HCHO + OH -> HO2 + CO", "ALD -> MEO2 + HO2 + CO", "ALD + OH -> C2O3", "C2O3 + NO -> NO2 + MEO2 + CO2",
    "C2O3 + NO2 -> PAN", "PAN -> C2O3 + NO2", "MEO2 + NO -> CH3O + NO2", "CH3O -> HCHO + HO2",
    "NO2 + OH -> HNO3", "O3P -> O3", "O3 -> O1D", "O3 -> O3P", "O1D -> 2 OH", "O1D -> O3P",
    "SO2 + OH -> SO4 + HO2", "NO3 -> NO", "NO3 -> NO2 + O3P", "NO2 + O3 -> NO3", "NO3 + NO2 -> N2O5",
    "N2O5 -> NO3 + NO2",
)

RATE_CONSTANTS = (0.35, 26.6, 1.23e4, 8.6e-4, 8.2e-4, 1.5e4, 1.3e-4, 2.4e4, 1.65e4, 9e3, 2.2e-2, 1.2e4, 1.88,
                  1.63e4, 4.8e6, 3.5e-4, 1.75e-2, 1e8, 4.44e11, 1.24e3, 2.1, 5.78, 4.74e-2, 1.78e3, 3.12)

# The Test Set's solution at t = 60 (pollu.f, routine polsoln), in SPECIES order.
TEST_SET_SOLUTION = (
    0.5646255480022769e-01, 0.1342484130422339e+00, 0.4139734331099427e-08, 0.5523140207484359e-02,
    0.2018977262302196e-06, 0.1464541863493966e-06, 0.7784249118997964e-01, 0.3245075353396018e+00,
    0.7494013383880406e-02, 0.1622293157301561e-07, 0.1135863833257075e-07, 0.2230505975721359e-02,
    0.2087162882798630e-03, 0.1396921016840158e-04, 0.8964884856898295e-02, 0.4352846369330103e-17,
    0.6899219696263405e-02, 0.1007803037365946e-03, 0.1772146513969984e-05, 0.5682943292316392e-04,
)

# Each species' largest value over [0, 6000] rounded up to a power of ten: the scale of its
# absolute tolerance.
SCALES = (1e-1, 1e0, 1e-8, 1e-1, 1e-6, 1e-6, 1e-1, 1e0, 1e-1, 1e-7,
          1e-7, 1e-2, 1e-3, 1e-4, 1e-1, 1e-16, 1e-2, 1e-3, 1e-5, 1e-3)


def _side(text: str) -> list[tuple[int, int]]:
    """(species index, coefficient) of one side of a reaction, e.g. "2 HO2 + CO"."""
    out = []
    for term in text.split("+"):
        coefficient, name = re.fullmatch(r"\s*(\d+\s+)?(\w+)\s*", term).groups()
        out.append((SPECIES.index(name), int(coefficient or 1)))
    return out


def _parse() -> tuple[tuple[tuple[int, ...], ...], np.ndarray]:
    """The reactants of each reaction (species indices; mass action) and the stoichiometric matrix."""
    reactants, S = [], np.zeros((len(SPECIES), len(REACTIONS)))
    for j, reaction in enumerate(REACTIONS):
        left, right = (_side(side) for side in reaction.split("->"))
        if any(c != 1 for _, c in left):
            raise ValueError(f"reaction {reaction!r}: a reactant with a coefficient is not mass action here")
        reactants.append(tuple(i for i, _ in left))
        for i, c in left:
            S[i, j] -= c
        for i, c in right:
            S[i, j] += c
    return tuple(reactants), S


REACTANTS, STOICHIOMETRY = _parse()
# Per species, (reaction, coefficient) of its nonzero entries of STOICHIOMETRY: the sparse form of
# dy/dt = S r that numpy and torch both evaluate.
_TERMS = tuple(tuple((j, float(S_ij)) for j, S_ij in enumerate(row) if S_ij) for row in STOICHIOMETRY)


def _product(y, idx: tuple[int, ...]):
    """The product of y[..., i] over i in idx (1.0 for none)."""
    out = 1.0
    for i in idx:
        out = out * y[..., i]
    return out


class Pollution(ODESystem):
    """POLLU learned from its first tenth: 50 log-spaced noisy samples over [6e-6, 6].

    Protocol: the grid log-spaced with 10 points per decade from 6e-6 (and t = 0), so that 6,
    60 (the Test Set's end), 600 and 6000 are grid points; training window [0, 6] (a tenth of the
    Test Set's span: the learner sees the radicals' quasi-steady states, NO2's photolysis and the
    NO-O3 titration, and the first of the slow oxidation) observed at 50 log-spaced times from
    6e-6 to 6 with 1 % log-normal noise (each sample times exp(0.01 N(0, 1)), so O1D near 3e-17
    keeps its decades); evaluation windows fit [6e-6, 6] (the training window itself),
    extrapolation [6, 60] (the rest of the Test Set's span) and long [60, 6000] (HCHO falls to
    9e-5, HNO3 grows eightfold; the reference stays positive and finite). Data loss: the species
    span 16 decades (O1D 3e-17 to CO 0.3), so a raw-unit loss (`data_loss = "sum_states"`) is
    dominated by the six that reach 1e-2 (NO2, NO, O3, HCHO, CO, ALD); use `"standardised"`,
    with `state_scale = "observed_max"` for the adaptive solvers' tolerances. Over [0, 6] HCHO,
    CO, ALD and SO2 change by 4 % or less (their std is 0.04 % to 0.8 % of their mean), so their
    observed std is mostly the 1 % noise: standardising gives their noise the weight the other
    species' signal gets.
    """

    name = "pollu"
    description = "POLLU air-pollution chemistry (Verwer 1994), 20 species, 25 reactions, rates over 15 decades"
    citation = ("Verwer (1994), SIAM J. Sci. Comput. 15:1243; Test Set for IVP Solvers (Mazzia & Magherini), "
                "problem POLLU (pollu.f)")
    states = tuple(State(name, bounds=(0.0, None)) for name in SPECIES)

    class Params(windowed_params(
        t_train=6.0, extrapolation=(6.0, 60.0), long=(60.0, 6000.0), t_first=6e-6, n_observations=50,
        noise=0.01, noise_help="log-normal noise level (std of log)")):
        k: tuple[Rate, ...] = Field(RATE_CONSTANTS, min_length=25, max_length=25,
                                    description="rate constants k1..k25 of the reactions, in order")
        y0: tuple[Concentration, ...] = Field(
            (0.0, 0.2, 0.0, 0.04, 0.0, 0.0, 0.1, 0.3, 0.01, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.007, 0.0, 0.0, 0.0),
            min_length=20, max_length=20, description="initial concentrations at t=0, in the species' order")


    def rates(self, y, xp):
        """The reaction rates r (..., 25) for y (..., 20): k_j times its reactants' concentrations."""
        k = self.params.k
        return xp.stack([k[j] * _product(y, idx) for j, idx in enumerate(REACTANTS)], -1)

    def rhs(self, t, y, xp):
        r = self.rates(y, xp)
        return xp.stack([sum(c * r[..., j] for j, c in terms) for terms in _TERMS], -1)

    def jac(self, t, y):
        """S dr/dy, with dr_j/dy_a = k_j times the product of the other reactants' concentrations."""
        k = self.params.k
        dr = np.zeros((len(REACTIONS), len(SPECIES)))
        for j, idx in enumerate(REACTANTS):
            for n, a in enumerate(idx):
                dr[j, a] += k[j] * _product(y, idx[:n] + idx[n + 1:])
        return STOICHIOMETRY @ dr

    def reference_solver(self) -> ReferenceSolver:
        """LSODA with the analytic Jacobian at rtol 1e-12 and atol 1e-14 x each species' scale
        (`SCALES`): at t = 60 it agrees with the Test Set's solution to 2.2e-12 (relative); on the
        grid over [0, 6000] it agrees with Radau at rtol 1e-12 (same atol) to 2.3e-8 (relative,
        above 1e-6 of each species' largest value; 3e-10 but for C2O3 early on), and to 1e-6 down
        to 1e-12 of each species' largest value in each window (against Radau with atol 1e-4
        times smaller), in 2.5 s, where that Radau takes 13 s."""
        return ReferenceSolver("LSODA", 1e-12, tuple(1e-14 * s for s in SCALES))

    def protocol(self) -> Protocol:
        p = self.params
        return Protocol(
            grid=LogGrid(6e-6, 10),
            train=(0.0, p.t_train),
            observe=Times.log(6e-6, p.t_train, p.n_observations),
            windows=(Window("fit", 6e-6, p.t_train), Window("extrapolation", *p.extrapolation),
                     Window("long", *p.long)),
            noise=LogNormalNoise(p.noise, p.noise_seed),
        )
