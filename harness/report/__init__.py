"""Renderers: each turns a ``Comparison`` (or the ``MatrixReport`` built from comparisons) into one output
format, and does nothing else; writing the files is the caller's job (``harness.matrix.publish``, the CLI).
Nothing is imported here, so a module that needs one renderer (or ``format``) loads only that one."""
