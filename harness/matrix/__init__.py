"""The version matrix: cells as virtualenvs, their runs, and the one report that judges them.

The cell side (``spec``, ``pins``, ``venvs``, ``cellrun``, ``cells``) is stdlib + ``packaging`` only, because
nox's own Python runs it; ``collect`` and ``publish`` judge and write in the controlling environment.
"""
