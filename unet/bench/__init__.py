"""Benchmarks against reference implementations (nnU-Net v2), run by the `benchmark_*` rules."""
