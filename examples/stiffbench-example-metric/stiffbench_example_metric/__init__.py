"""An example stiffbench metric plugin: `max_abs_error`, the worst pointwise error (docs/plugin-tutorial.md)."""
