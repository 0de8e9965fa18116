"""A verdict's typed contents (metrics, tolerance, performance) written as report JSON and read back are the same
verdict, and the JSON is what it has been since format 1: a kind's missing metrics and unrecorded speeds left out,
an unjudged verdict's tolerance, metrics and performance ``{}``."""

from __future__ import annotations

import dataclasses
import json
from typing import Any, Dict

import pytest
from hypothesis import given
from hypothesis import strategies as st

from harness.measured import At, Evidence, Histogram, Named, NotJudged, Swap, TauAt, TopKEvidence, adapter
from harness.verdict import Check, Comparison, Metrics, ModelVerdict, SidePerformance, Status, Tolerance

_NUMBER = {"int": st.integers(-(2**53), 2**53), "float": st.floats(allow_nan=False, allow_infinity=False),
           "str": st.text(max_size=12)}
_HISTOGRAM = st.builds(Histogram, edges=st.lists(st.floats(1e-12, 1.0), max_size=4),
                       counts=st.lists(st.integers(0, 10**9), max_size=4), zeros=st.lists(st.integers(0, 10**9),
                                                                                            min_size=1, max_size=1))


def _fields(cls: type, required: Dict[str, Any]) -> Any:
    """``cls`` with every field drawn by its annotation (an Optional one may be None)."""
    drawn = {}
    for f in dataclasses.fields(cls):
        base = str(f.type).removeprefix("Optional[").removesuffix("]")
        value = _HISTOGRAM if f.name == "abs_diff_histogram" else _NUMBER[base]
        drawn[f.name] = required.get(f.name, st.none() | value if str(f.type).startswith("Optional") else value)
    return st.builds(cls, **drawn)


_ints, _floats, _ids = st.integers(0, 10**6), _NUMBER["float"], st.text(max_size=6)
_at = st.builds(At, id=_ids, row=_ints, dim=st.none() | _ints, value=_ints | _floats, actual=st.none() | _floats,
                baseline=st.none() | _floats, below=st.none() | _ints, dims=st.none() | st.lists(_ints, max_size=3))
_named = st.builds(Named, count=_ints, ids=st.lists(_ids, max_size=3))
_pair = st.lists(_floats, min_size=2, max_size=2)
_evidence = st.builds(
    Evidence, kind=st.none() | st.sampled_from(["embedding", "quantized", "rerank"]), elements=st.none() | _ints,
    pairs=st.none() | _ints, precision=st.none() | _ids, limit_key=st.none() | _ids, max_abs=st.none() | _at,
    max_rel=st.none() | _at, min_cosine=st.none() | _at, texts_beyond=st.none() | st.lists(_at, max_size=2),
    worst=st.none() | st.lists(_at, max_size=2), queries=st.none() | _ints, reordered_count=st.none() | _ints,
    reordered=st.none() | st.lists(st.builds(Swap, _ids, _ints, _ids, _ints, _ids, _ints, _pair, _pair), max_size=2),
    min_kendall_tau=st.none() | st.builds(TauAt, _ids, _floats),
    topk=st.none() | st.builds(TopKEvidence, _ints, _ints, _named, _named, st.none() | _ints, st.none() | _ints),
    topk_not_judged=st.none() | st.builds(NotJudged, _ids, _ints, _ints))

_verdicts = st.builds(
    ModelVerdict, model_id=st.text(max_size=8), kind=st.sampled_from(["bi-encoder", "cross-encoder"]),
    status=st.sampled_from(list(Status)), tolerance_class=st.text(max_size=8),
    checks=st.lists(st.builds(Check, name=st.sampled_from(["max_abs_diff", "min_cosine"]), observed=_NUMBER["float"],
                              limit=_NUMBER["float"], op=st.sampled_from(["<=", ">="]), passed=st.booleans()), max_size=2),
    metrics=_fields(Metrics, {}), evidence=_evidence, tolerance=st.none() | _fields(Tolerance, {}),
    performance=st.dictionaries(st.sampled_from(["baseline", "candidate"]), _fields(SidePerformance, {}), max_size=2))


def _has_none(data: Any) -> bool:
    """A None anywhere in JSON: the evidence leaves absent entries out, at every depth."""
    if isinstance(data, dict):
        return any(v is None or _has_none(v) for v in data.values())
    return isinstance(data, list) and any(v is None or _has_none(v) for v in data)


@pytest.mark.fuzz
@given(st.lists(_verdicts, max_size=3))
def test_a_verdict_written_as_json_reads_back_the_same(models: list[ModelVerdict]) -> None:
    comparison = Comparison("base.parquet", "cand.parquet", "policy", models)
    text = json.dumps(comparison.serialize())
    written = json.loads(text)
    assert Comparison.from_dict(written) == comparison
    assert json.dumps(Comparison.from_dict(written).serialize()) == text  # counts stay integers, keys in order
    for model, data in zip(models, written["models"]):
        assert ModelVerdict.from_dict(data) == model
        assert data["metrics"] == {k: v for k, v in dataclasses.asdict(model.metrics).items() if v is not None}
        assert data["tolerance"] == (dataclasses.asdict(model.tolerance) if model.tolerance else {})
        assert not _has_none(data["evidence"]) and adapter(Evidence).validate_python(data["evidence"]) == model.evidence
        for side in model.performance:  # the device and its hardware always said, None or not
            assert list(data["performance"][side])[:2] == ["device", "hardware"]
            assert all(v is not None for k, v in data["performance"][side].items() if k != "hardware")


def test_an_unjudged_verdict_writes_empty_contents_as_it_always_did() -> None:
    verdict = ModelVerdict("m", "bi-encoder", Status.ERROR, "fp32", reason="baseline: not run")
    data = Comparison("a", "b", "p", [verdict]).serialize()["models"][0]
    assert (data["metrics"], data["tolerance"], data["performance"], data["evidence"]) == ({}, {}, {}, {})
    assert ModelVerdict.from_dict(data) == verdict


def test_a_metric_of_another_spelling_is_refused_by_the_judge() -> None:
    """One spelling per metric: the judge's builders cannot add a key the reports would not read."""
    with pytest.raises(TypeError, match="max_abs_dif"):
        Metrics(**{"max_abs_dif": 1.0})  # type: ignore[arg-type]
