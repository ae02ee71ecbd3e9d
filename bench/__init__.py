"""Benchmarks (issue 9): `make bench` / `python -m bench.run`. Not tests: they measure."""
