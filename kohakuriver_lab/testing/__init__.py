"""Test helpers shipped with the package (used by the test suite and the benchmarks)."""
