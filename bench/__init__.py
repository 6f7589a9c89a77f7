"""Benchmarks of adam against the usual ways of doing the same job; `python -m bench --help`."""
