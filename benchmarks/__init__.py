"""Benchmarks that need hardware this project's CI does not have (see benchmarks/gpu)."""
