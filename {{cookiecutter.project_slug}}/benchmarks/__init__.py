"""The service under load, next to its baselines: `python -m benchmarks.bench --help`."""
