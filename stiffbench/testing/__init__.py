"""Test kit for plugin authors: conformance checks to run against any system, method or metric."""
