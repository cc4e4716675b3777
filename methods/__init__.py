"""Built-in method plugins (installed as `stiffbench_methods`), one file per method."""
