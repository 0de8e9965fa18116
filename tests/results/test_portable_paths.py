"""Results files and baselines record no absolute paths of the machine that made them (issue #13).

The committed baselines' metadata was rewritten through ``harness.results.writer.rewrite_metadata`` (not
re-run): their rows must be exactly the rows they had, which ``ROW_SHA256`` pins (computed before the rewrite).
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any, Iterator, List

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from harness.baselines import create_baseline, rerun_options
from harness.results import METADATA_KEY, ResultsFile
from harness.results.meta import local_path, path_anchors, portable_metadata, portable_path

from conftest import ROOT

BASELINES = ROOT / "fixtures" / "baselines"
#: sha256 of each committed baseline's rows (IPC stream of the table without its schema metadata): nothing may
#: touch a single vector, score or id of a committed baseline silently. Last set when the baselines were
#: regenerated on purpose (2026-12-07, `harness baseline update`, to record the CPU fingerprint and token counts).
ROW_SHA256 = {
    "default-cpu-float32": "4c50b83c0fef0b57f6dcbc62bd1942ac0906ce7d3d0a6950dff92702f2137cb2",
    "example-cpu-float32": "8004635b2366fb76b6f35714926d46f080d42462df6105d6c8a28dcd73d2b1f3",
    "tiny-cpu-float32": "75105c4846001000a525c14b9548c84722821436d967622068baa5d7df9e03fb",
}


def _rows_sha256(path: Path) -> str:
    table = pq.read_table(str(path)).replace_schema_metadata(None).combine_chunks()
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return hashlib.sha256(sink.getvalue().to_pybytes()).hexdigest()


def _strings(value: Any, where: str = "") -> Iterator[tuple]:
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _strings(item, f"{where}.{key}" if where else str(key))
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield from _strings(item, f"{where}[{i}]")
    elif isinstance(value, str):
        yield where, value


def _absolute_paths(meta: Any) -> List[str]:
    return [f"{where}={value}" for where, value in _strings(meta) if os.path.isabs(value) and "://" not in value]


def test_committed_baselines_are_listed() -> None:
    # kept runs (``<name>.obtained.parquet``, gitignored) are not baselines
    assert sorted(p.stem for p in BASELINES.glob("*.parquet") if "." not in p.stem) == sorted(ROW_SHA256)


@pytest.mark.parametrize("name", sorted(ROW_SHA256))
def test_committed_baselines_record_no_absolute_paths_and_kept_their_rows(name: str) -> None:
    path = BASELINES / f"{name}.parquet"
    meta = json.loads(pq.read_schema(str(path)).metadata[METADATA_KEY])
    assert _absolute_paths(meta) == []
    assert _rows_sha256(path) == ROW_SHA256[name]
    assert ResultsFile(path).records  # and it still reads


def test_the_row_hash_sees_a_changed_vector(tmp_path: Path) -> None:
    """The pin is not blind: one vector element moved by 1e-7 changes it."""
    from harness.testing import add_noise_to_one, perturb_results

    moved = perturb_results(BASELINES / "tiny-cpu-float32.parquet", tmp_path / "moved.parquet", "tiny-bi-encoder",
                            vectors=add_noise_to_one(3, 1e-7))
    assert _rows_sha256(moved) != ROW_SHA256["tiny-cpu-float32"]


def test_a_new_run_and_baseline_record_portable_paths(tiny_results: Path, tmp_path: Path) -> None:
    meta = ResultsFile(tiny_results).meta
    assert _absolute_paths(meta) == []
    assert meta["models"]["tiny-bi-encoder"]["directory"] == "fixtures/models/tiny-bi-encoder"
    assert meta["models"]["tiny-bi-encoder"]["source"]["path"] == "fixtures/models/tiny-bi-encoder"
    target = tmp_path / "base.parquet"
    prov = create_baseline(tiny_results, target, reason="test")
    assert prov.source_file == str(tiny_results.resolve())  # the caller's message names the real file
    recorded = ResultsFile(target).meta
    assert _absolute_paths(recorded) == [] and recorded["baseline"]["source_file"].endswith("/tiny.parquet")


def test_portable_paths_round_trip_on_this_machine(tmp_path: Path) -> None:
    anchors = path_anchors(ROOT)
    inside = str(ROOT / "fixtures" / "models" / "tiny-bi-encoder")
    assert portable_path(inside, anchors) == "fixtures/models/tiny-bi-encoder"
    assert local_path("fixtures/models/tiny-bi-encoder", anchors) == inside
    home = str(Path.home() / "some" / "model")
    assert portable_path(home, [a for a in anchors if a[0] == "~"]) == "~/some/model"
    for untouched in ("relative/dir", "http://host:8080/m", None):
        assert portable_path(untouched, anchors) == untouched
    meta = {"models": {"m": {"source": {"path": inside, "hub_id": "/not/a/path/key"}, "directory": inside}},
            "fingerprint": {"executable": inside, "torch": "2.13.0"}, "baseline": {"source_file": inside,
            "history": [{"source_file": inside, "previous_file": inside}]}}
    fixed = portable_metadata(meta, anchors)
    assert _absolute_paths(fixed) == ["models.m.source.hub_id=/not/a/path/key"]  # only the path keys are rewritten
    assert fixed["fingerprint"]["torch"] == "2.13.0" and meta["models"]["m"]["directory"] == inside  # a copy


def test_a_baseline_model_outside_the_registry_reruns_from_its_relative_path(tmp_path: Path) -> None:
    """A model the registry here does not know is rebuilt from the baseline's recorded (relative) source."""
    empty = tmp_path / "registry.toml"
    empty.write_text("[models]\n")
    options = rerun_options(BASELINES / "tiny-cpu-float32.parquet", tmp_path / "out.parquet", registry=empty)
    spec = options.registry.models["tiny-bi-encoder"]
    assert spec.path == str(ROOT / "fixtures" / "models" / "tiny-bi-encoder") and Path(spec.path).is_dir()
