"""A tiny system with a closed-form solution, for fast plugin tests (not registered).

Damped harmonic oscillator x'' + 2 zeta omega x' + omega^2 x = 0 as the 2-state system
z = (x, v): x' = v, v' = -omega^2 x - 2 zeta omega v. Underdamped (zeta < 1), so
x(t) = exp(-zeta omega t) (A cos(w_d t) + B sin(w_d t)) with w_d = omega sqrt(1 - zeta^2).
It declares its known terms (`stiffbench.structure`): x' = v known, v' a relaxation driven by x,
exact for zeta > 0 with v_inf = -omega x / (2 zeta) and tau = 1 / (2 zeta omega).
"""

from __future__ import annotations

import numpy as np
from pydantic import Field

from ..api import AbstractSystem, KnownPhysics, PluginParams, TrainingTask, Trajectory, Window
from ..structure import HybridStructure, KnownTerms, Relaxation


class DampedOscillatorParams(PluginParams):
    omega: float = Field(2.0, gt=0, description="natural angular frequency (1/time)")
    zeta: float = Field(0.1, ge=0, lt=1, description="damping ratio (underdamped)")
    y0: tuple[float, float] = Field((1.0, 0.0), description="initial (x, v)")
    dt: float = Field(0.05, gt=0, description="sampling step")
    t_train: float = Field(2.0, gt=0, description="end of the training window [0, t_train]")
    t_end: float = Field(4.0, gt=0, description="end of the extrapolation window [t_train, t_end]")


class DampedOscillator(AbstractSystem, KnownPhysics, KnownTerms):
    """Underdamped linear oscillator with an exact solution; noise-free observations."""

    name = "damped_oscillator"
    description = "Underdamped harmonic oscillator (exact solution), for tests."
    Params = DampedOscillatorParams
    state_names = ("x", "v")

    def grid(self, t_end: float) -> np.ndarray:
        return np.arange(int(round(t_end / self.params.dt)) + 1) * self.params.dt

    def exact(self, t: np.ndarray) -> np.ndarray:
        p = self.params
        wd = p.omega * np.sqrt(1 - p.zeta**2)
        x0, v0 = p.y0
        a, b = x0, (v0 + p.zeta * p.omega * x0) / wd
        decay = np.exp(-p.zeta * p.omega * t)
        x = decay * (a * np.cos(wd * t) + b * np.sin(wd * t))
        v = decay * ((b * wd - p.zeta * p.omega * a) * np.cos(wd * t) - (a * wd + p.zeta * p.omega * b) * np.sin(wd * t))
        return np.stack([x, v], axis=1)

    def reference(self, t_end: float, cache_dir=None) -> Trajectory:
        t = self.grid(t_end)
        return Trajectory(t, self.exact(t), self.state_names)

    def training_task(self, cache_dir=None) -> TrainingTask:
        return TrainingTask(
            system=self.name,
            observations=self.reference(self.params.t_train),
            y0=np.array(self.params.y0, dtype=float),
            forecast_t=self.grid(self.horizon),
            dt=self.params.dt,
        )

    def evaluation_windows(self) -> list[Window]:
        return [Window("extrapolation", self.params.t_train, self.params.t_end)]

    def torch_vector_field(self):
        import torch

        omega, zeta = self.params.omega, self.params.zeta

        def f(t, z):
            x, v = z[..., 0], z[..., 1]
            return torch.stack([v, -(omega**2) * x - 2 * zeta * omega * v], dim=-1)

        return f

    def known_terms(self) -> HybridStructure:
        """x' = v known; v relaxes towards a function of x."""
        return HybridStructure(self.state_names, ("x",), lambda t, z: z[..., 1:2], {"v": Relaxation(("x",))})
