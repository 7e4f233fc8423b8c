"""Benchmarks: freshlake's code paths measured against the bare limit in the same run."""
