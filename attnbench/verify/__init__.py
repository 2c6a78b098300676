"""Correctness: seeded inputs, the float64 oracle, the same-dtype baseline, the pass rule."""
