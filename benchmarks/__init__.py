"""Benchmark scripts (run them as files: `.venv/bin/python benchmarks/NAME.py`)."""
