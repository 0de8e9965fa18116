"""A lenient read of ``matrix.toml`` for the noxfile: valid cells stay sessions, broken parts are named.

Nox fixes its session list when it imports the noxfile, so one typo in a strict load would leave no
``matrix_cell`` session at all; here each matrix and cell is validated on its own, and what fails becomes a
``MatrixProblem`` (a session of its own). nox's own Python imports this module.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

from harness.config.tomlfile import read_toml
from harness.matrix.spec import DEFAULT_MATRIX_FILE, Matrix, MatrixError, MatrixFile, _parse_cell, _parse_matrix, load_matrix_file  # noqa: PLC2701 - the one parser, applied piecewise

__all__ = ["MatrixProblem", "load_lenient"]


@dataclass(frozen=True)
class MatrixProblem:
    """One part of a matrix file that did not validate: ``cell`` 1-based as in the error text (None: the matrix
    table, and ``matrix`` None too: the whole file); ``message`` the ``MatrixError`` line."""

    matrix: Optional[str]
    cell: Optional[int]
    message: str

    @property
    def label(self) -> str:
        """A session parameter id no valid cell can have (cell ids never end in ``-invalid`` by accident)."""
        if self.matrix is None:
            return "matrix-file-invalid"
        return f"{self.matrix}/cell-{self.cell}-invalid" if self.cell else f"{self.matrix}/invalid"


def _matrix_leniently(source: Path, name: str, table: Any, problems: List[MatrixProblem]) -> Optional[Matrix]:
    """The matrix with its valid cells (None when the table itself is broken or no cell is valid)."""
    try:
        return _parse_matrix(source, name, table)
    except MatrixError as whole:
        raw_cells = table.get("cells") if isinstance(table, dict) else None
        if not isinstance(raw_cells, list):
            problems.append(MatrixProblem(name, None, str(whole)))
            return None
        kept = []
        for index, raw in enumerate(raw_cells):
            try:
                _parse_cell(source, name, index, raw)
            except MatrixError as err:
                problems.append(MatrixProblem(name, index + 1, str(err)))
            else:
                kept.append(raw)
        if not kept:
            return None
        try:
            return _parse_matrix(source, name, {**table, "cells": kept})
        except MatrixError as err:  # the table's own keys, or two cells with one id
            problems.append(MatrixProblem(name, None, str(err)))
            return None


def load_lenient(path: str | os.PathLike[str] | None = None) -> Tuple[Optional[MatrixFile], List[MatrixProblem]]:
    """Every valid matrix and cell of ``path``, plus a problem per broken matrix or cell.

    A file that cannot be read or parsed at all (or has no matrix) is one problem with no matrices.
    """
    source = Path(path) if path else DEFAULT_MATRIX_FILE
    try:
        return load_matrix_file(source), []
    except MatrixError as strict:
        try:
            data = read_toml(source, MatrixError, "no such matrix file")
        except MatrixError:  # unreadable, not TOML, too deep: the strict error says which
            return None, [MatrixProblem(None, None, str(strict))]
        tables = data.get("matrix") if set(data) <= {"matrix"} else None
        if not isinstance(tables, dict) or not tables:
            return None, [MatrixProblem(None, None, str(strict))]
    problems: List[MatrixProblem] = []
    matrices: Dict[str, Matrix] = {}
    for name, table in tables.items():
        matrix = _matrix_leniently(source, name, table, problems)
        if matrix is not None:
            matrices[name] = matrix
    return MatrixFile(path=source, matrices=matrices), problems
