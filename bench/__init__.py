"""Benchmarks (not tests): `python -m bench.steps` and `python -m bench.driver`."""
