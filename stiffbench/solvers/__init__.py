"""Differentiable ODE solvers in PyTorch: fixed-step Heun, adaptive Tsit5 and Rodas5P, and the
gradient modes (backprop, backsolve adjoint, interpolating adjoint) in `adjoint`."""

from ._adaptive import StepLimitExceeded

__all__ = ["StepLimitExceeded"]
