"""An example stiffbench method plugin: the linear ODE baseline `linear_ode` (docs/plugin-tutorial.md)."""
