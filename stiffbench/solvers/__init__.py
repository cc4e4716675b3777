"""Differentiable ODE solvers in PyTorch."""
