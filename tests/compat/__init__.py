"""Compatibility suites: apps written with the official `inngest` SDKs (PyPI, npm) run
unchanged against our executor."""
