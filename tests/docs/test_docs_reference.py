"""The reference pages generated from the code (docs/reference/) are current, and a new HARNESS_* variable cannot
go undocumented. Regenerate with ``python docs/reference_pages.py`` (or ``nox -s docs -- --regenerate``)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs" / "reference"
_spec = importlib.util.spec_from_file_location("reference_pages", ROOT / "docs" / "reference_pages.py")
assert _spec is not None and _spec.loader is not None
reference = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(reference)  # the docs' generator: a script beside the pages, not part of the package


@pytest.mark.parametrize("name", sorted(reference.pages()))
def test_the_committed_reference_page_is_what_the_code_generates(name: str) -> None:
    committed = (DOCS / name).read_text(encoding="utf-8")
    assert committed == reference.pages()[name], (
        f"docs/reference/{name} is stale: regenerate it with `python docs/reference_pages.py` and commit it")


def test_check_mode_names_a_stale_page_and_fails(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert reference.main(["--out", str(tmp_path)]) == 0
    assert reference.main(["--check", "--out", str(tmp_path)]) == 0
    (tmp_path / "cli.md").write_text("old\n", encoding="utf-8")
    assert reference.main(["--check", "--out", str(tmp_path)]) == 1
    assert "cli.md" in capsys.readouterr().err


def test_every_command_and_flag_is_in_the_cli_page() -> None:
    page = reference.pages()["cli.md"]
    for command in ("harness run", "harness compare", "harness check", "harness explain", "harness baseline create",
                    "harness matrix list", "harness matrix cell", "harness matrix report", "harness attribute run"):
        assert f"`{command}`" in page, command
    for flag in ("`--format`", "`--index`", "`--allow-network`", "`--json`", "`--dir`"):
        assert flag in page, flag


def test_a_harness_variable_without_a_description_fails_the_generation(monkeypatch: pytest.MonkeyPatch) -> None:
    helps = dict(reference.ENV_HELP)
    del helps["HARNESS_REPORTS_DIR"]
    monkeypatch.setattr(reference, "ENV_HELP", helps)
    with pytest.raises(SystemExit, match="HARNESS_REPORTS_DIR"):
        reference.environment_page()


def test_a_description_of_a_variable_no_code_reads_fails_the_generation(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(reference, "ENV_HELP", {**reference.ENV_HELP, "HARNESS_NOT_A_SETTING": "gone"})
    with pytest.raises(SystemExit, match="HARNESS_NOT_A_SETTING"):
        reference.environment_page()


def test_the_pages_do_not_depend_on_the_callers_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    before = reference.pages()
    monkeypatch.setenv("HARNESS_MATRIX", "smoke")
    monkeypatch.setenv("HARNESS_VENV_BACKEND", "pip")
    monkeypatch.setenv("COLUMNS", "40")
    assert reference.pages() == before
