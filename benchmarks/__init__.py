"""Benchmarks: `make bench` runs every `bench_*.py` module here and prints its figures.

Each module exposes `main(argv) -> None` and prints lines a person can read. Compare ratios measured in one run:
the machines are shared and noisy, so absolute times are indications, not pass/fail limits.
"""
