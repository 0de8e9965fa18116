"""The comparator judges quantized embeddings (precision int8/uint8/binary/ubinary) as integers.

Element-wise float limits (atol 1e-5) mean nothing for bucket indices or packed sign bits: a float drift of
1e-7 moves an int8 element by one bucket or flips a bit near zero. These tests check that quantized models get
their own checks (bits flipped / buckets moved per text, share of texts changed, top-k agreement of retrieval by
the quantized scores), that streaming over row groups, threads and realignment gives the one-pass answer, and
that a real perturbation fails while fp32 noise passes.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any, Dict, Tuple

import numpy as np
import pytest

from harness.compare import metrics as m
from harness.compare.comparator import compare_files
from harness.config.environment import CompareSettings
from harness.config.policy import load_policy
from harness.errors import IncompatibleInputs, PolicyError
from harness.results import ModelRows, ResultsFile, ResultsWriter
from harness.verdict import Status

import oracles
from oracles import compare_quantized

MODEL = "q-model"
N_DOCS, N_QUERIES, DIM = 3_000, 40, 64


def _floats(seed: int = 3) -> Tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    vectors = rng.normal(0, 0.05, size=(N_DOCS + N_QUERIES, DIM)).astype(np.float32)
    roles = np.array(["document"] * N_DOCS + ["query"] * N_QUERIES)
    return vectors, roles


def _quantize(vectors: np.ndarray, precision: str, ranges: np.ndarray) -> np.ndarray:
    """The sentence-transformers rules (``quantize_embeddings``) with fixed calibration ``ranges`` (min, max)."""
    if precision in ("binary", "ubinary"):
        packed = np.packbits(vectors > 0, axis=-1)
        return (packed.astype(np.int16) - 128).astype(np.int8) if precision == "binary" else packed
    starts = ranges[0]
    steps = (ranges[1] - ranges[0]) / 255
    buckets = ((vectors - starts) / steps).astype(np.int64)
    return (buckets - 128).astype(np.int8) if precision == "int8" else np.clip(buckets, 0, 255).astype(np.uint8)


def _write(path: Path, vectors: np.ndarray, roles: np.ndarray, precision: str, order: np.ndarray = None,
           chunk: int = 700) -> Path:
    ids = np.array([f"t{i:05d}" for i in range(len(vectors))])
    if order is not None:
        ids, roles, vectors = ids[order], roles[order], vectors[order]
    meta = {"corpus": {"name": "q", "sha256": "d" * 64}, "fingerprint": {},
            "models": {MODEL: {"kind": "bi-encoder", "status": "ok", "dim": vectors.shape[1],
                               "vector_dtype": str(vectors.dtype), "precision": precision}}}
    # a given order makes a file as older writers and other tools wrote it (not canonical: normalized on read)
    with ResultsWriter(path, meta, vector_width=vectors.shape[1] * vectors.dtype.itemsize,
                       canonical=order is None) as writer:
        for s in range(0, len(ids), chunk):  # several row groups per file
            writer.write(ModelRows(MODEL, "embed", list(ids[s : s + chunk]), roles=list(roles[s : s + chunk]),
                                   vectors=vectors[s : s + chunk]))
    return path


def _verdict(base: Path, cand: Path, tolerance_class: str = "fp32", **kwargs: Any):
    return compare_files(base, cand, tolerance_class=tolerance_class, **kwargs).models[0]


def _pair(tmp_path: Path, precision: str, change: Any, **kwargs: Any) -> Tuple[Path, Path, np.ndarray, np.ndarray]:
    floats, roles = _floats()
    ranges = np.stack([floats.min(axis=0), floats.max(axis=0)])
    moved = change(floats)
    base = _quantize(floats, precision, ranges)
    cand = _quantize(moved, precision, ranges)
    return (_write(tmp_path / f"{precision}-base.parquet", base, roles, precision),
            _write(tmp_path / f"{precision}-cand.parquet", cand, roles, precision, **kwargs), base, cand)


def _fp32_noise(x: np.ndarray) -> np.ndarray:
    """Drift of the size fp32 runs show across devices and batch sizes (measured max 3.8e-7)."""
    return x + np.random.default_rng(11).normal(0, 1e-7, size=x.shape).astype(np.float32)


def _half_precision_drift(x: np.ndarray) -> np.ndarray:
    """Drift of the size a bfloat16 run shows (measured on all-MiniLM-L6-v2: max 4.8e-3). Rounding the outputs
    alone (``bf16_round``) would keep every sign, and so every bit of a binary embedding."""
    return x + np.random.default_rng(12).normal(0, 1e-3, size=x.shape).astype(np.float32)


PRECISIONS = ["int8", "uint8", "binary", "ubinary"]


@pytest.mark.parametrize("precision", PRECISIONS)
def test_identical_quantized_runs_pass_with_integer_checks(tmp_path: Path, precision: str) -> None:
    base, _, _, _ = _pair(tmp_path, precision, lambda x: x)
    verdict = _verdict(base, base)
    key = "max_bit_flips" if "binary" in precision else "max_int_distance"
    assert verdict.status is Status.PASS
    assert [c.name for c in verdict.checks] == [key, "changed_fraction", "top10_order_agreement", "top10_set_agreement"]
    assert getattr(verdict.metrics, key) == 0 and verdict.metrics.rows_changed == 0
    assert "max_abs_diff" not in verdict.metrics.to_json()  # float checks do not apply to integers


@pytest.mark.parametrize("precision", PRECISIONS)
def test_fp32_noise_passes_and_half_precision_drift_fails(tmp_path: Path, precision: str) -> None:
    base, noisy, b, c = _pair(tmp_path, precision, _fp32_noise)
    verdict = _verdict(base, noisy)
    assert verdict.status is Status.PASS, verdict.reason
    got = verdict.metrics.to_json()
    assert got == pytest.approx({**got, **compare_quantized(b, c, precision)["metrics"]})
    (tmp_path / "b").mkdir()
    base, drifted, b, c = _pair(tmp_path / "b", precision, _half_precision_drift)
    failed = _verdict(base, drifted)
    assert failed.status is Status.FAIL
    key = "max_bit_flips" if "binary" in precision else "max_int_distance"
    assert not next(ch for ch in failed.checks if ch.name == key).passed, failed.reason
    assert failed.offenders and failed.offenders[0].metric == key
    worst = compare_quantized(b, c, precision, worst_n=1)["worst"][0]
    assert failed.offenders[0].item_id == f"t{worst['row']:05d}" and failed.offenders[0].value == worst[key]
    assert failed.min_passing[key] == getattr(failed.metrics, key)


@pytest.mark.parametrize("batch", [0, 7])
@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("precision", ["int8", "binary"])
def test_streamed_and_realigned_equal_one_pass(tmp_path: Path, precision: str, threads: int, batch: int) -> None:
    """Row groups, worker threads, a candidate in another order and queries judged in batches of 7 (one pass
    over the documents each) give the in-memory verdict, top-k included."""
    settings = CompareSettings(threads=threads, memory_mb=0, min_queries_per_pass=batch) if batch else \
        CompareSettings(threads=threads)
    shuffle = np.random.default_rng(5).permutation(N_DOCS + N_QUERIES)
    base, cand, b, c = _pair(tmp_path, precision, _half_precision_drift)
    shuffled = _write(tmp_path / "shuffled.parquet", c, _floats()[1], precision, order=shuffle)
    reference = compare_quantized(b, c, precision)["metrics"]
    roles = _floats()[1]
    if "binary" in precision:
        def scores(rows: np.ndarray) -> np.ndarray:
            packed = rows.view(np.uint8) ^ np.uint8(0x80) if precision == "binary" else rows.view(np.uint8)
            return np.unpackbits(packed, axis=1).astype(np.float64) * 2 - 1
    else:
        def scores(rows: np.ndarray) -> np.ndarray:
            return rows.astype(np.float64)
    q, d = roles == "query", roles == "document"
    tol = load_policy().tolerance(MODEL, "fp32")
    agree = m.topk_agreement(oracles.cosine_matrix(scores(b[q]), scores(b[d])), oracles.cosine_matrix(scores(c[q]), scores(c[d])),
                             tol.topk, tol.tie_tolerance)
    for candidate in (cand, shuffled):
        verdict = _verdict(base, candidate, settings=settings)
        assert {k: getattr(verdict.metrics, k) for k in reference} == pytest.approx(reference)
        assert verdict.metrics.topk_order_agreement == agree.share("same_order")
        assert verdict.metrics.topk_set_agreement == agree.share("same_set")
        assert verdict.metrics.topk_mean_overlap == pytest.approx(agree.share("overlap"))


def test_binary_hamming_ties_are_ties(tmp_path: Path) -> None:
    """Binary retrieval scores are whole bit counts: documents at the same Hamming distance swapping places
    is not a reorder, one bit flip that changes a distance is (and is reported by the top-k checks)."""
    floats, roles = _floats()
    base = _quantize(floats, "ubinary", None)
    duplicate = base.copy()
    duplicate[1] = duplicate[0]  # two documents at exactly the same distance from every query
    swapped = duplicate.copy()
    swapped[[0, 1]] = swapped[[1, 0]]
    a = _write(tmp_path / "a.parquet", duplicate, roles, "ubinary")
    b = _write(tmp_path / "b.parquet", swapped, roles, "ubinary")
    assert _verdict(a, b).metrics.topk_order_agreement == 1.0


def test_precision_mismatch_is_refused(tmp_path: Path) -> None:
    floats, roles = _floats()
    ranges = np.stack([floats.min(axis=0), floats.max(axis=0)])
    a = _write(tmp_path / "int8.parquet", _quantize(floats, "int8", ranges), roles, "int8")
    b = _write(tmp_path / "uint8.parquet", _quantize(floats, "uint8", ranges), roles, "uint8")
    with pytest.raises(IncompatibleInputs, match="vectors are uint8, the baseline's int8"):
        compare_files(a, b)
    f = _write(tmp_path / "float.parquet", floats, roles, "float32")
    with pytest.raises(IncompatibleInputs, match="vectors are float32, the baseline's int8"):
        compare_files(a, f)


def test_stored_dtype_must_match_the_precision(tmp_path: Path) -> None:
    floats, roles = _floats()
    wrong = _write(tmp_path / "wrong.parquet", _quantize(floats, "ubinary", None), roles, "binary")
    with pytest.raises(Exception, match="is binary but its vectors are stored as uint8"):
        compare_files(wrong, wrong)


def test_policy_limits_for_quantized_models(tmp_path: Path) -> None:
    base, rounded, b, c = _pair(tmp_path, "binary", _half_precision_drift)
    observed = compare_quantized(b, c, "binary")["metrics"]
    policy = tmp_path / "policy.toml"
    loose_topk = "min_quantized_topk_order_agreement = 0\nmin_quantized_topk_set_agreement = 0\n"
    policy.write_text(f'[models."{MODEL}"]\nmax_bit_flips = {observed["max_bit_flips"]}\nmax_changed_fraction = 1\n' + loose_topk)
    assert _verdict(base, rounded, policy=load_policy(policy)).status is Status.PASS
    policy.write_text(f'[models."{MODEL}"]\nmax_bit_flips = {observed["max_bit_flips"]}\nmax_changed_fraction = 0.001\n' + loose_topk)
    verdict = _verdict(base, rounded, policy=load_policy(policy))
    assert verdict.status is Status.FAIL and "changed_fraction" in verdict.reason
    for bad, message in (("max_bit_flips = 1.5", "whole number"), ("max_changed_fraction = 2", "at most 1"),
                         ("max_int_distance = -1", "non-negative")):
        policy.write_text(f"[classes.fp32]\n{bad}\n")
        with pytest.raises(PolicyError, match=message):
            load_policy(policy)


def test_cli_reports_quantized_checks(tmp_path: Path) -> None:
    base, rounded, _, _ = _pair(tmp_path, "int8", _half_precision_drift)
    done = subprocess.run([sys.executable, "-m", "harness", "compare", str(base), str(rounded),
                           "--json", str(tmp_path / "verdict.json")], capture_output=True, text=True)
    assert done.returncode == 1, done.stderr
    assert "max_int_distance" in done.stdout
    report: Dict[str, Any] = json.loads((tmp_path / "verdict.json").read_text())
    model = report["models"][0]
    assert model["metrics"]["max_int_distance"] >= 2 and model["status"] == "fail"
    assert ResultsFile(base).meta["models"][MODEL]["precision"] == "int8"


def test_collapsed_calibration_range_is_named_by_dimension(tmp_path: Path) -> None:
    """What a float16 run does to all-MiniLM-L6-v2's int8 output: dimensions the model leaves near 1e-32
    underflow to 0, sentence-transformers' calibration range for them collapses, and their buckets jump (255
    measured). The verdict fails and the worst texts name those dimensions first."""
    quantization = pytest.importorskip("sentence_transformers.quantization")
    floats, roles = _floats()
    floats[:, [5, 40]] = np.random.default_rng(2).normal(0, 1e-32, size=(len(floats), 2)).astype(np.float32)
    half = floats.astype(np.float16).astype(np.float32)  # the dead dimensions become exactly 0
    with np.errstate(all="ignore"):  # sentence-transformers divides by the zero range
        base = quantization.quantize_embeddings(floats, precision="int8", calibration_embeddings=floats)
        cand = quantization.quantize_embeddings(half, precision="int8", calibration_embeddings=half)
    a = _write(tmp_path / "a.parquet", base, roles, "int8")
    b = _write(tmp_path / "b.parquet", cand, roles, "int8")
    verdict = _verdict(a, b, tolerance_class="fp16")
    assert verdict.status is Status.FAIL and verdict.metrics.max_int_distance > 100
    for offender in verdict.offenders:
        named = offender.detail.split("dimension(s) ")[1].split(", ")
        assert set(named[:2]) <= {"5", "40"}, offender.detail


def test_reports_show_quantized_drift_in_its_own_units(tmp_path: Path) -> None:
    """Terminal, Markdown and HTML name bits / buckets and the quantized limits, never a float |diff|."""
    from harness.report.html import render_html
    from harness.report.markdown import render_markdown
    from harness.report.matrix_report import build_matrix_report
    from harness.report.text import render_comparison

    base, drifted, _, _ = _pair(tmp_path, "binary", _half_precision_drift)
    judged = compare_files(base, drifted, tolerance_class="fp32")
    comparison = judged.serialize()
    flips = comparison["models"][0]["metrics"]["max_bit_flips"]
    text = render_comparison(judged)
    assert f"{flips} bit(s)" in text and "max_bit_flips" in text and "bit(s) " in text
    cell = {"cell_id": "c", "status": comparison["status"], "setup_s": 1.0, "run_s": 1.0, "reason": "",
            "results": str(drifted), "comparison": comparison, "params": {"torch": "2.13.0"}}
    report = build_matrix_report("q", str(base), [cell])
    assert f"{flips} bit(s)" in render_markdown(report)
    page = render_html(report)
    assert "max bits flipped per text" in page and f"max |Δ| {flips} bit(s)" in page
    assert "no difference histogram" not in page  # no empty float plot for integers
    # the rank bars mark the quantized limits (bf16: top-10 set 0.4), not the float ones (0.85)
    loose = compare_files(base, drifted, tolerance_class="bf16").serialize()
    page = render_html(build_matrix_report("q", str(base), [{**cell, "comparison": loose, "status": loose["status"]}]))
    tol = load_policy().tolerance(MODEL, "bf16")
    assert f'title="limit {tol.min_quantized_topk_set_agreement:g}"' in page
    assert f'title="limit {tol.min_topk_set_agreement:g}"' not in page


def test_assertions_api_judges_quantized_arrays_and_files(tmp_path: Path) -> None:
    """``assert_embeddings_close`` on int8/binary arrays (precision given) or quantized results files: the
    integer checks decide and the message speaks in bits / buckets, naming the texts and dimensions."""
    from harness.assertions import assert_embeddings_close

    floats, roles = _floats()
    ranges = np.stack([floats.min(axis=0), floats.max(axis=0)])
    ids = [f"t{i:05d}" for i in range(len(floats))]
    for precision in ("int8", "binary"):
        base = _quantize(floats, precision, ranges)
        assert_embeddings_close(_quantize(_fp32_noise(floats), precision, ranges), base, precision=precision,
                                ids=ids, roles=list(roles))
        moved = _quantize(_half_precision_drift(floats), precision, ranges)
        with pytest.raises(AssertionError) as failure:
            assert_embeddings_close(moved, base, precision=precision, ids=ids, roles=list(roles))
        message = str(failure.value)
        unit = "bit(s) flipped" if precision == "binary" else "bucket(s) moved"
        assert f"Most {unit} in one text:" in message and "Texts changed" in message and "text 't" in message
        assert "Greatest absolute difference" not in message  # no float wording for integers
        assert ("max_bit_flips" if precision == "binary" else "max_int_distance") in message  # tolerance line
    with pytest.raises(ValueError, match="integer embeddings: pass precision"):
        assert_embeddings_close(base, base)
    a = _write(tmp_path / "a.parquet", _quantize(floats, "int8", ranges), roles, "int8")
    b = _write(tmp_path / "b.parquet", _quantize(_half_precision_drift(floats), "int8", ranges), roles, "int8")
    assert_embeddings_close(a, a)
    with pytest.raises(AssertionError, match="Most bucket\\(s\\) moved in one text"):
        assert_embeddings_close(b, a)
