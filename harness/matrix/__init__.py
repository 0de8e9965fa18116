"""The version matrix: cells as virtualenvs, their runs, and the one report that judges them.

``spec`` (matrix.toml) and ``pins`` describe the cells; ``pythons``, ``venvs`` and ``cellrun`` build and run them
and ``cells`` records what each did (``cell.json``): these are stdlib + ``packaging`` only, because nox's own
Python runs them. ``collect`` compares the cells with the baseline and ``publish`` writes the report files, in
the controlling environment; ``attribution`` plans a walk between two cells and ``attribution_run`` runs and
judges it. The commands are ``harness matrix`` and ``harness attribute`` (``harness.cli.matrix_commands``).
"""
