"""fraudstream benchmarks: `make bench` (python -m bench)."""
