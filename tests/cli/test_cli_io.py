"""The command line's inputs and outputs (issue #13): ``-`` for stdout, help texts with exit codes, model and
baseline names (near misses, ``--model DIR`` ids), a file compared with itself, and progress reporting."""

from __future__ import annotations

import argparse
import json
import shutil
import time
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Callable, Iterator, List

import pytest

from harness.cli import EXIT_CODES_HELP, _parser, main
from harness.cli.progress import LineProgress, make_listener
from harness.config.registry import load_registry
from harness.errors import ModelLoadError
from harness.run.progress import ProgressEvent

from conftest import ROOT

TINY = ROOT / "fixtures" / "baselines" / "tiny-cpu-float32.parquet"
MODELS = ROOT / "fixtures" / "models"


# -- '-' means stdout ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("option", ["--json", "--markdown", "--junit"])
@pytest.mark.parametrize("command", [["compare", str(TINY), str(TINY)], ["baseline", "diff", str(TINY), str(TINY)]],
                         ids=["compare", "baseline-diff"])
def test_dash_writes_the_verdict_to_stdout_and_the_human_text_to_stderr(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture, option: str, command: List[str]) -> None:
    monkeypatch.chdir(tmp_path)
    assert main([*command, option, "-"]) == 0
    captured = capsys.readouterr()
    assert not (tmp_path / "-").exists() and list(tmp_path.iterdir()) == []  # no file named '-'
    if option == "--json":
        assert json.loads(captured.out)["status"] == "pass"  # stdout is one JSON document, nothing else
    elif option == "--junit":
        assert ET.fromstring(captured.out).tag == "testsuites"
    else:
        assert captured.out.startswith("# Drift report") and "harness compare:" not in captured.out
    assert "PASS" in captured.err and "tiny-bi-encoder" in captured.err  # the human verdict went to stderr


def test_output_files_are_still_files_and_stdout_keeps_the_verdict(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    written = {name: tmp_path / name for name in ("v.json", "v.md", "v.xml")}
    assert main(["compare", str(TINY), str(TINY), "--json", str(written["v.json"]), "--markdown", str(written["v.md"]),
                 "--junit", str(written["v.xml"])]) == 0
    assert "harness compare: PASS" in capsys.readouterr().out
    assert json.loads(written["v.json"].read_text())["status"] == "pass"
    assert "PASS" in written["v.md"].read_text() and ET.parse(written["v.xml"]).getroot().tag == "testsuites"


def test_two_outputs_on_stdout_are_refused_before_any_work(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["compare", str(TINY), str(tmp_path / "missing.parquet"), "--json", "-", "--junit", "-"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == "error: --json and --junit: only one output can go to stdout ('-')"


# -- help texts ------------------------------------------------------------------------------------------------


def _all_parsers(parser: argparse.ArgumentParser, name: str = "harness") -> Iterator[tuple]:
    yield name, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child_name, child in action.choices.items():
                yield from _all_parsers(child, f"{name} {child_name}")


def test_every_command_help_lists_the_exit_codes() -> None:
    parsers = list(_all_parsers(_parser()))
    assert len(parsers) > 10  # run, compare, check, explain, baseline *, matrix *, attribute *
    for name, parser in parsers:
        text = parser.format_help()
        judges = name in ("harness compare", "harness check", "harness baseline diff", "harness matrix report",
                          "harness matrix cell")
        never = name in ("harness run", "harness explain", "harness baseline create", "harness baseline update",
                         "harness baseline reference", "harness baseline certify", "harness baseline list",
                         "harness baseline show", "harness matrix list")
        groups = ("harness", "harness baseline", "harness matrix", "harness attribute", "harness attribute run",
                  "harness attribute report")
        assert judges or never or name in groups, f"{name}: say whether it judges (a new command?)"
        if name in groups:
            continue
        expected = "1 drift (only a verdict returns it" if judges else "never returns 1 (drift)"
        assert expected in " ".join(text.split()), name
    assert "3 internal error" in EXIT_CODES_HELP and "130 interrupted" in EXIT_CODES_HELP


def test_check_help_describes_the_baseline_run_not_run_defaults() -> None:
    check = dict(_all_parsers(_parser()))["harness check"]
    text = " ".join(check.format_help().split())
    for option in ("--device", "--dtype", "--batch-size", "--tf32", "--threads", "--attn-implementation"):
        action = next(a for a in check._actions if option in a.option_strings)
        assert action.default is None and "as the baseline recorded" in action.help, option
    assert "(default: auto)" not in text and "the shipped fixtures/corpus)" not in text.split("--corpus")[0]
    assert "another corpus is refused" in text and "locates the baseline's models" in text


# -- model and baseline names ----------------------------------------------------------------------------------


def test_a_near_miss_model_id_suggests_the_registry_id(capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(ModelLoadError, match="did you mean 'tiny-bi-encoder'"):
        load_registry().select(["tiny-bi-encodr"])
    with pytest.raises(ModelLoadError) as far:
        load_registry().select(["zzz"])
    assert "did you mean" not in str(far.value)
    assert main(["run", "--models", "tiny-cross-encodr", "--out", "x.parquet"]) == 2
    assert "did you mean 'tiny-cross-encoder'" in capsys.readouterr().err


def test_an_unknown_baseline_name_points_to_baseline_list(capsys: pytest.CaptureFixture) -> None:
    assert main(["check", "tiny-cpu-float23"]) == 2
    err = capsys.readouterr().err.strip()
    assert "baseline 'tiny-cpu-float23' not found" in err and "did you mean 'tiny-cpu-float32'" in err
    assert "'harness baseline list' shows the baselines there" in err and len(err.splitlines()) == 1


def test_a_registry_models_directory_runs_under_its_registry_id(tmp_path: Path) -> None:
    registry = load_registry()
    [spec] = registry.select([str(MODELS / "tiny-bi-encoder")])
    assert spec.id == "tiny-bi-encoder" and spec == registry.models["tiny-bi-encoder"]
    copy = tmp_path / "my-model"
    shutil.copytree(MODELS / "tiny-bi-encoder", copy)
    assert registry.select([str(copy)])[0].id == "my-model"  # another directory keeps its own name
    _, models = registry.with_model_id([str(copy)], "tiny-bi-encoder")
    assert models == ["tiny-bi-encoder"]
    with pytest.raises(ModelLoadError, match="needs exactly one --model DIR"):
        registry.with_model_id(["tiny-bi-encoder"], "x")


@pytest.mark.slow
def test_model_id_makes_the_subset_hint_work_when_followed(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """A copied model directory run with ``--model-id``: the comparison with the baseline says to pass
    ``--models``, and doing so passes (the ids match). The run reports progress one line per model (no tty)."""
    copy = tmp_path / "copied-model"
    shutil.copytree(MODELS / "tiny-bi-encoder", copy)
    out = tmp_path / "run.parquet"
    assert main(["run", "--model", str(copy), "--model-id", "tiny-bi-encoder", "--device", "cpu", "--out", str(out)]) == 0
    err = capsys.readouterr().err
    assert "harness run: [1/1] tiny-bi-encoder (bi-encoder: 687 documents + 60 queries) started" in err
    assert "harness run: [1/1] tiny-bi-encoder ok in " in err and " texts/s)" in err
    assert main(["compare", str(TINY), str(out)]) == 2
    assert "pass --models to compare a subset" in capsys.readouterr().err
    assert main(["compare", str(TINY), str(out), "--models", "tiny-bi-encoder"]) == 0


# -- a file compared with itself -------------------------------------------------------------------------------


def test_a_file_compared_with_itself_passes_with_a_note(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["compare", str(TINY), str(TINY)]) == 0
    out = capsys.readouterr().out
    assert "harness compare: PASS" in out and "baseline and candidate are the same file" in out
    link = tmp_path / "same.parquet"
    link.symlink_to(TINY)  # another name for the same file is still the same file
    assert main(["compare", str(TINY), str(link)]) == 0
    assert "same file" in capsys.readouterr().out
    copy = tmp_path / "copy.parquet"
    shutil.copy(TINY, copy)  # an equal copy is another file: no note
    assert main(["compare", str(TINY), str(copy)]) == 0
    assert "same file" not in capsys.readouterr().out


def test_the_same_file_note_is_on_the_verdict_in_every_format(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = {suffix: tmp_path / f"v.{suffix}" for suffix in ("json", "md", "xml")}
    assert main(["compare", str(TINY), str(TINY), "--json", str(out["json"]), "--markdown", str(out["md"]),
                 "--junit", str(out["xml"])]) == 0
    text = capsys.readouterr().out
    (note,) = json.loads(out["json"].read_text())["notes"]
    assert note.startswith("baseline and candidate are the same file") and f"note: {note}" in text
    assert "## Notes" in out["md"].read_text() and "passes by construction" in out["md"].read_text()
    props = ET.parse(out["xml"]).getroot().findall("testsuite/properties/property[@name='note']")
    assert [p.get("value") for p in props] == [note]
    copy = tmp_path / "copy.parquet"
    shutil.copy(TINY, copy)
    assert main(["compare", str(TINY), str(copy), "--json", str(out["json"])]) == 0
    assert json.loads(out["json"].read_text())["notes"] == []


def test_files_without_a_model_in_common_say_so_and_list_both_sides(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from harness.testing import perturb_results

    def only(model_id: str) -> Callable[[dict], dict]:
        return lambda meta: {**meta, "models": {model_id: meta["models"][model_id]}}

    bi = perturb_results(TINY, tmp_path / "bi.parquet", "tiny-bi-encoder", meta_update=only("tiny-bi-encoder"))
    cross = perturb_results(TINY, tmp_path / "cross.parquet", "tiny-cross-encoder", meta_update=only("tiny-cross-encoder"))
    assert main(["compare", str(bi), str(cross)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--models" not in err, err
    assert "no model in common" in err and "baseline: tiny-bi-encoder; candidate: tiny-cross-encoder" in err


# -- progress --------------------------------------------------------------------------------------------------


def _events(stage: str, **kw: object) -> ProgressEvent:
    return ProgressEvent(stage, "m", "cross-encoder", 2, 3, roles=(("pair", 1758),), **kw)  # type: ignore[arg-type]


def test_line_progress_prints_start_finish_and_a_heartbeat(capsys: pytest.CaptureFixture) -> None:
    import sys

    lines = LineProgress(sys.stderr, prefix="harness check", interval_s=0.05)
    lines(_events("start"))
    time.sleep(0.3)
    lines(_events("finish", status="ok", elapsed_s=12.25, items_per_s=143.5))
    time.sleep(0.15)
    err = capsys.readouterr().err.splitlines()
    assert err[0] == "harness check: [2/3] m (cross-encoder: 1,758 pairs) started"
    assert err[-1] == "harness check: [2/3] m ok in 12.2 s (144 pairs/s)"
    beats = [line for line in err if "still running" in line]
    assert len(beats) >= 2 and len(err) == len(beats) + 2  # and none after the finish


def test_the_display_follows_progress_flag_and_terminal() -> None:
    import io

    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    assert make_listener(False, io.StringIO()) is None
    assert isinstance(make_listener(None, io.StringIO()), LineProgress)
    assert type(make_listener(None, Tty())).__name__ == "BarProgress"
    assert type(make_listener(True, io.StringIO())).__name__ == "BarProgress"


def test_the_terminal_bar_names_the_model_its_roles_n_of_m_and_the_rate() -> None:
    import io

    from harness.cli.progress import BarProgress

    screen = io.StringIO()
    bar = BarProgress(screen)
    bar(ProgressEvent("start", "tiny-bi-encoder", "bi-encoder", 1, 2, roles=(("document", 687), ("query", 60))))
    bar(ProgressEvent("finish", "tiny-bi-encoder", "bi-encoder", 1, 2, roles=(("document", 687), ("query", 60)),
                      status="ok", elapsed_s=3.0, items_per_s=250.0))
    bar.close()
    drawn = screen.getvalue()
    assert "[1/2] tiny-bi-encoder (bi-encoder: 687 documents + 60 queries)" in drawn
    assert "tiny-bi-encoder: ok, 250 texts/s" in drawn and "1/2" in drawn


def test_the_runner_reports_progress_through_its_hook_and_never_prints(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """A listener sees each model start and finish in order; the runner itself writes nothing to stdout/stderr
    beyond what the libraries print, and a broken listener does not lose the run."""
    from conftest import run_tiny

    seen: List[ProgressEvent] = []
    run_tiny(tmp_path / "a.parquet", on_progress=seen.append)
    assert [(e.stage, e.model_id, e.index, e.total) for e in seen] == [
        ("start", "tiny-bi-encoder", 1, 2), ("finish", "tiny-bi-encoder", 1, 2),
        ("start", "tiny-cross-encoder", 2, 2), ("finish", "tiny-cross-encoder", 2, 2)]
    assert seen[1].status == "ok" and seen[1].items_per_s and seen[1].elapsed_s and seen[3].roles == (("pair", 1758),)
    assert "harness run:" not in capsys.readouterr().err

    def broken(event: ProgressEvent) -> None:
        raise RuntimeError("display gone")

    assert run_tiny(tmp_path / "b.parquet", on_progress=broken).is_file()
