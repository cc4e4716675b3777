"""stiffbench: a pluggable benchmark for methods that learn stiff dynamics."""

__version__ = "0.1.0"
