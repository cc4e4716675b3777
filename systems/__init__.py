"""Built-in system plugins (installed as `stiffbench_systems`), one file per system."""
