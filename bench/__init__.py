"""Benchmarks, run by hand from the repository root (see README.md)."""
