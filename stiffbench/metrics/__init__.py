"""Built-in metric plugins, registered through entry points like any third-party metric."""
