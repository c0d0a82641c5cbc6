"""Helpers the tests and benchmarks share: synthetic event streams (`workload`), table digests and scratch
databases (`verify`), second homes (`homes`). Not shipped in the package."""
