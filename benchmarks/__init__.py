"""Benchmarks of flask-refresh against its peers; ``python3 benchmarks/run.py``."""
