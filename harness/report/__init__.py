"""Renderers: each turns ``Comparison.serialize()`` data into one output format, and does nothing else."""
