"""Benchmarks: each prints its results as ratios against a baseline measured in the same run
(docs/benchmarks.md has the figures).

Run them from the repository root, as files or as modules: ``.venv/bin/python
bench/pipeline.py`` or ``.venv/bin/python -m bench.pipeline``. ``harness`` holds what the
data-path benchmarks share (CPU meters, worker processes, cleanup, the synthetic videos);
``phases`` the measurements of bench/pipeline.py, one module each.
"""
