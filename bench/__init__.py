"""Batchgate benchmarks: `python -m bench` (full) or `python -m bench --quick`.

Each section runs the engine's real code side by side with a plain baseline in the same run, so the
figures that carry goals are ratios, which survive a noisy shared machine better than absolute times.
The last line printed is one JSON object with every figure (see docs/performance.md).
"""
