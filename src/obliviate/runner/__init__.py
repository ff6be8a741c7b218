"""Benchmark suites: scenarios x methods x seeds, cached references, executors and reports."""
