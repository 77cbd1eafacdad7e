"""The benchmarks, run as modules from the repository's root: ``python -m benchmarks.NAME`` (harness.py)."""
