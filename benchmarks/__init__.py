"""Benchmarks of micropause-archive: crawl cost, extraction speed, scale, re-crawl cost.

``python -m benchmarks`` runs them all and writes ``benchmarks/results/latest.json`` and
``latest.md``; see benchmarks/README.md for what each measures and the latest numbers.
"""
