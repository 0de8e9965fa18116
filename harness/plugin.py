"""pytest plugin (entry point ``pytest11: harness``): baselines as release-checklist test items.

One test item per model of each ``--harness-baseline``; the baseline's models are re-run here once per session
and set of run options (as ``harness check`` does) and kept as ``<name>.obtained.parquet`` for review.

Every pytest run where embedding-harness is installed imports this module: everything heavy is imported only
when a check runs.
"""

from __future__ import annotations

import time
import warnings
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple

import pytest

_MARK = "harness"
_STASH = pytest.StashKey["_Candidates"]()


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("harness", "embedding-harness release checks")
    group.addoption("--harness-baseline", action="append", default=[], metavar="PATH",
                    help="check the models of this baseline in this environment, one test item per model (repeatable)")
    group.addoption("--harness-policy", metavar="FILE", help="tolerance policy TOML overlaying the defaults")
    group.addoption("--harness-class", metavar="NAME", help="force a tolerance class (fp32, cpu-vs-cuda, tf32, fp16, bf16, ...)")
    group.addoption("--harness-candidate", metavar="PATH",
                    help="judge this existing results file instead of running the models now")
    group.addoption("--harness-device", metavar="DEVICE",
                    help="run on this device instead of the baseline's (e.g. cuda against a CPU baseline)")
    group.addoption("--harness-regen", action="store_true",
                    help="create missing baselines (from --harness-candidate or a run now), then fail so they get reviewed")
    group.addoption("--harness-models", nargs="+", metavar="ID",
                    help="with --harness-regen: models (ids or set names) of a baseline created from a run")
    parser.addini("harness_baseline", type="paths", default=[],
                  help="baselines to check (--harness-baseline adds to them), relative to the config file")
    parser.addini("harness_policy", default="", help="tolerance policy TOML, relative to the config file")
    parser.addini("harness_class", default="", help="force a tolerance class")


def _baselines(config: pytest.Config) -> List[Path]:
    """The ini's baselines, then the command line's, each once (paths as given, or from the config file's dir)."""
    paths = [Path(p) for p in config.getini("harness_baseline")] + [Path(p) for p in config.getoption("harness_baseline")]
    return list(dict.fromkeys(paths))


def _policy(config: pytest.Config) -> Optional[str]:
    """``--harness-policy``, else the ini's ``harness_policy`` taken from the config file's directory."""
    given = config.getoption("harness_policy")
    if given:
        return str(given)
    ini = str(config.getini("harness_policy") or "")
    if not ini:
        return None
    base = config.inipath.parent if config.inipath else config.rootpath
    return str(base / ini)


def _class(config: pytest.Config) -> Optional[str]:
    return config.getoption("harness_class") or str(config.getini("harness_class") or "") or None


def obtained_path(baseline: Path) -> Path:
    """Where a run made here for ``baseline`` is kept for review: ``<dir>/<name>.obtained.parquet``."""
    return baseline.parent / f"{baseline.name.removesuffix('.parquet')}.obtained.parquet"


#: options whose value is a path: written ``--opt PATH``, pytest takes PATH for a test path when it picks the
#: rootdir (before any plugin's options are known), so a path outside the project moves the rootdir
_PATH_OPTIONS = ("--harness-baseline", "--harness-policy", "--harness-candidate")


def _rootdir_without_option_values(config: pytest.Config) -> Optional[Path]:
    """The rootdir pytest would have chosen had no harness path option been read as a test path (None: unknown)."""
    raw = list(config.invocation_params.args)
    if not any(arg in _PATH_OPTIONS for arg in raw[:-1]):
        return None
    try:
        from _pytest.config.findpaths import determine_setup

        return determine_setup(inifile=config.option.inifilename, override_ini=config.option.override_ini,
                               args=[str(a) for a in config.option.file_or_dir or []],
                               rootdir_cmd_arg=config.option.rootdir or None,
                               invocation_dir=config.invocation_params.dir)[0]
    except (ImportError, TypeError, AttributeError, ValueError):  # another pytest: no check, no harm
        return None


def pytest_configure(config: pytest.Config) -> None:
    expected = _rootdir_without_option_values(config)
    if expected is not None and expected != config.rootpath:  # pytest decided before this plugin loaded: say so
        config.issue_config_time_warning(pytest.PytestConfigWarning(
            f"a harness path option moved pytest's rootdir to {config.rootpath} (it would be {expected}, with that "
            "directory's configuration): pytest reads '--harness-... PATH' as a test path before plugins load; "
            "write --harness-baseline=PATH (with '=') or set harness_baseline / harness_policy in "
            "[tool.pytest.ini_options]"), stacklevel=2)
    config.addinivalue_line("markers", f"{_MARK}: a model check generated from --harness-baseline (select with -m {_MARK})")
    config.stash[_STASH] = _Candidates(config)


def pytest_report_header(config: pytest.Config) -> Optional[List[str]]:
    baselines = _baselines(config)
    if not baselines:
        return None
    source = config.getoption("harness_candidate") or "run here, kept as <baseline>.obtained.parquet"
    return [f"harness: baselines {', '.join(_display(config, b) for b in baselines)}; candidate: {source}; "
            f"policy: {_policy(config) or 'built-in'}; class: {_class(config) or 'auto'}"]


@pytest.hookimpl(tryfirst=True)  # before -m/-k deselection, so that `-m harness` selects these items
def pytest_collection_modifyitems(session: pytest.Session, config: pytest.Config, items: List[pytest.Item]) -> None:
    for path in _baselines(config):
        name = _display(config, path)  # node ids like a test file's: path/to/baseline.parquet::model
        collector = BaselineChecks.from_parent(session, name=name, nodeid=name, baseline=path)
        items.extend(session.genitems(collector))  # with the collect hooks and reports, so counts are right


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    runs = config.stash[_STASH].runs
    if runs:
        terminalreporter.section("harness")
        for line in runs:
            terminalreporter.write_line(line)


def _display(config: pytest.Config, path: Path) -> str:
    """A node id that names the file: relative to the rootdir inside it, absolute outside."""
    resolved = path.resolve()
    try:
        return resolved.relative_to(config.rootpath).as_posix()
    except ValueError:
        return resolved.as_posix()


class _Candidates:
    """The candidate results of this session: one run per set of run options, shared by all items."""

    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        self._done: Dict[Tuple[Any, ...], Tuple[Optional[Path], Optional[BaseException]]] = {}
        self.runs: List[str] = []

    def note(self, line: str) -> None:
        """A line for the session's ``harness`` summary section (each once)."""
        if f"note: {line}" not in self.runs:
            self.runs.append(f"note: {line}")

    def _tmp(self) -> Path:
        factory = getattr(self.config, "_tmp_path_factory", None)
        if factory is not None:
            return Path(factory.mktemp("harness-candidate"))
        import tempfile

        return Path(tempfile.mkdtemp(prefix="harness-candidate-"))

    def for_baseline(self, baseline: Path) -> Path:
        """The results of re-running ``baseline`` here as ``harness check`` does (or ``--harness-candidate``)."""
        given = self.config.getoption("harness_candidate")
        if given:
            return Path(given)
        import dataclasses

        from harness.baselines import rerun_options

        options = rerun_options(baseline, "candidate.parquet", device=self.config.getoption("harness_device"))
        key = (options.device, options.dtype, options.batch_size, options.tf32, options.threads,
               options.attn_implementation, str(options.corpus_dir), tuple(options.registry.select(options.models)))
        kept = obtained_path(baseline)  # beside the baseline, for review and promotion
        if key not in self._done:
            self._done[key] = self._run(dataclasses.replace(options, out=kept))
        path = _path_or_raise(self._done[key])
        if path.resolve() != kept.resolve():  # one run shared by baselines with the same options: each keeps a copy
            import shutil

            from harness.fsio import atomic_output

            with atomic_output(kept) as tmp:
                shutil.copyfile(path, tmp)
        return kept

    def fresh_run(self, models: Optional[List[str]]) -> Path:
        """A run of ``models`` (default: the default set) as ``harness run`` would make it here, for --harness-regen."""
        from harness.config.project import run_inputs
        from harness.run.runner import RunOptions

        registry, corpus, _ = run_inputs(None, None, None)
        options = RunOptions(out=self._tmp() / "candidate.parquet", corpus_dir=corpus, registry=registry,
                             models=models, device=self.config.getoption("harness_device") or "auto")
        return _path_or_raise(self._run(options))

    def _run(self, options: Any) -> Tuple[Optional[Path], Optional[BaseException]]:
        from harness.errors import HarnessError
        from harness.run.runner import run

        started = time.perf_counter()
        try:
            summary = run(options)
        except Exception as err:  # noqa: BLE001 - kept and raised by every item that needs this run
            self.runs.append(f"run failed: {err}" if isinstance(err, HarnessError) else f"run failed: {err!r}")
            return None, err
        statuses = ", ".join(f"{k} {v}" for k, v in summary.statuses.items())
        self.runs.append(f"candidate {summary.path} ({options.device} {options.dtype}, batch {options.batch_size}; "
                         f"{statuses}; {time.perf_counter() - started:.1f} s)")
        return summary.path, None


def _path_or_raise(outcome: Tuple[Optional[Path], Optional[BaseException]]) -> Path:
    path, error = outcome
    if error is not None:
        raise error
    assert path is not None
    return path


class BaselineChecks(pytest.Collector):
    """The checks of one baseline file: one ``ModelCheck`` per model, or one ``MissingBaseline``."""

    def __init__(self, *, baseline: Path, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.baseline = baseline

    def collect(self) -> List[pytest.Item]:
        if not self.baseline.is_file():
            return [MissingBaseline.from_parent(self, name="missing-baseline")]
        from harness.errors import HarnessError
        from harness.results import ResultsFile

        try:
            models = list(ResultsFile(self.baseline).records)
        except HarnessError as err:
            return [BrokenBaseline.from_parent(self, name="unreadable-baseline", error=str(err))]
        return [ModelCheck.from_parent(self, name=model_id) for model_id in models]

    def reportinfo(self) -> Tuple[Path, Optional[int], str]:
        return self.baseline, None, f"harness baseline {self.baseline}"


class _HarnessItem(pytest.Item):
    parent: BaselineChecks

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.add_marker(_MARK)

    @property
    def candidates(self) -> _Candidates:
        return self.config.stash[_STASH]

    def reportinfo(self) -> Tuple[Path, Optional[int], str]:
        return self.parent.baseline, None, f"{self.name} vs {self.parent.baseline}"

    def _repr_failure_py(self, excinfo: pytest.ExceptionInfo[BaseException], style: Any = None) -> Any:
        """An error in ``setup`` (the run, bad input): one line for a ``HarnessError``, a traceback for a bug."""
        from harness.errors import HarnessError

        if isinstance(excinfo.value, HarnessError):
            return f"harness error: {excinfo.value}"
        return super()._repr_failure_py(excinfo, style=style)

    def repr_failure(self, excinfo: pytest.ExceptionInfo[BaseException], style: Any = None) -> str:
        from harness.errors import HarnessError

        if isinstance(excinfo.value, (AssertionError, HarnessError)):
            prefix = "" if isinstance(excinfo.value, AssertionError) else "harness error: "
            return prefix + str(excinfo.value)
        return str(super().repr_failure(excinfo, style=style))


class ModelCheck(_HarnessItem):
    """One model of a baseline, run and judged in ``setup``: bad input or a bug there is an *error* of the item,
    and only a verdict that failed its tolerance is a *failed* test."""

    _failure: Optional[AssertionError] = None

    def setup(self) -> None:
        from harness.assertions import assert_model_matches
        from harness.compare.comparator import same_file_note
        from harness.errors import HarnessError

        candidate = self.candidates.for_baseline(self.parent.baseline)
        for note in same_file_note(self.parent.baseline, candidate):
            warnings.warn(pytest.PytestWarning(f"{self.nodeid}: {note}"), stacklevel=1)
            self.candidates.note(note)
        try:
            assert_model_matches(candidate, self.parent.baseline, self.name, _policy(self.config),
                                 tolerance_class=_class(self.config))
        except HarnessError:
            raise
        except AssertionError as failure:
            self._failure = failure

    def runtest(self) -> None:
        if self._failure is not None:
            raise self._failure


class MissingBaseline(_HarnessItem):
    """A --harness-baseline that does not exist: fails, or with --harness-regen creates it and fails."""

    def runtest(self) -> None:
        target = self.parent.baseline
        if not self.config.getoption("harness_regen"):
            raise AssertionError(
                f"Baseline {target} does not exist.\n"
                f"Create it from a reviewed run: harness baseline create {target} [--from results.parquet], "
                "or rerun pytest with --harness-regen"
            )
        from harness.baselines import create_baseline

        source = self.config.getoption("harness_candidate")
        source_path = Path(source) if source else self.candidates.fresh_run(self.config.getoption("harness_models"))
        prov = create_baseline(source_path, target, reason="created by pytest --harness-regen")
        raise AssertionError(
            f"Baseline {target} did not exist and was created from {prov.source_file}.\n"
            "Review it (harness baseline show), commit it, and run again: a new baseline is never a pass."
        )


class BrokenBaseline(_HarnessItem):
    """A --harness-baseline that exists but cannot be read (never regenerated: nothing is overwritten)."""

    def __init__(self, *, error: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.error = error

    def runtest(self) -> None:
        from harness.errors import ResultsFileError

        raise ResultsFileError(self.error)


# -- fixtures for users' own tests ----------------------------------------------------------------------------


@pytest.fixture(scope="session")
def harness_policy(pytestconfig: pytest.Config) -> Any:
    """The tolerance ``Policy`` of this session (``--harness-policy`` overlaying the defaults)."""
    from harness.config.policy import load_policy

    return load_policy(_policy(pytestconfig))


@pytest.fixture(scope="session")
def harness_candidate_for(pytestconfig: pytest.Config) -> Callable[[str | Path], Path]:
    """``harness_candidate_for(baseline)``: results of re-running that baseline's models here (cached per session)."""
    candidates = pytestconfig.stash[_STASH]
    return lambda baseline: candidates.for_baseline(Path(baseline))


@pytest.fixture(scope="session")
def harness_baselines(pytestconfig: pytest.Config) -> List[Path]:
    """The baselines of this session (``harness_baseline`` in the ini, then ``--harness-baseline``)."""
    return _baselines(pytestconfig)

