"""Benchmarks of the masked-calling product: ``python -m bench`` (see bench/README.md)."""
