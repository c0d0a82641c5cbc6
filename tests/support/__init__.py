"""Helpers the tests and benchmarks share: synthetic event streams (`workload`), table digests and scratch
databases (`verify`). Not shipped in the package."""
