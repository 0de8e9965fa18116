"""Baselines are never overwritten silently: create refuses, --force keeps the previous file, update needs a reason."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

from harness.baselines import create_baseline, list_baselines, provenance
from harness.cli import main
from harness.errors import BaselineExists, BaselineMissing, HarnessError
from harness.results import ResultsFile
from harness.testing import add_noise_to_one, perturb_results


def test_create_refuses_overwrite_and_force_keeps_previous(tiny_results: Path, tmp_path: Path) -> None:
    target = tmp_path / "base.parquet"
    create_baseline(tiny_results, target, reason="first")
    first = target.read_bytes()
    with pytest.raises(BaselineExists, match="refusing to overwrite"):
        create_baseline(tiny_results, target)
    assert target.read_bytes() == first
    prov = create_baseline(tiny_results, target, force=True, reason="second")
    kept = Path(prov.previous_file)
    assert kept.read_bytes() == first and kept.name.startswith("base.")
    assert ResultsFile(target).meta["baseline"]["history"][0]["reason"] == "first"


def test_update_needs_existing_baseline_and_reason(tiny_results: Path, tmp_path: Path) -> None:
    target = tmp_path / "b.parquet"
    with pytest.raises(BaselineMissing):
        create_baseline(tiny_results, target, action="update", reason="x")
    create_baseline(tiny_results, target)
    with pytest.raises(HarnessError, match="--reason"):
        create_baseline(tiny_results, target, action="update")
    noisy = perturb_results(tiny_results, tmp_path / "n.parquet", "tiny-bi-encoder", vectors=add_noise_to_one(0, 1e-3))
    prov = create_baseline(noisy, target, action="update", reason="accepted torch upgrade")
    assert prov.reason == "accepted torch upgrade" and prov.created_by
    shown = provenance(target)
    assert shown["baseline"]["action"] == "update" and shown["fingerprint"]["torch_version"]


def test_invalid_source_touches_nothing(tmp_path: Path, tiny_results: Path) -> None:
    target = tmp_path / "keep.parquet"
    create_baseline(tiny_results, target)
    before = target.read_bytes()
    junk = tmp_path / "junk.parquet"
    junk.write_bytes(b"PAR1 garbage")
    with pytest.raises(HarnessError):
        create_baseline(junk, target, force=True)
    assert target.read_bytes() == before and len(list(tmp_path.glob("keep.*"))) == 1


def test_cli_create_list_show(tiny_results: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["baseline", "create", "mine", "--from", str(tiny_results), "--dir", str(tmp_path)]) == 0
    assert main(["baseline", "create", "mine", "--from", str(tiny_results), "--dir", str(tmp_path)]) == 2
    assert "refusing to overwrite" in capsys.readouterr().err
    assert main(["baseline", "list", "--dir", str(tmp_path)]) == 0
    assert "mine" in capsys.readouterr().out
    assert [b.name for b in list_baselines(tmp_path)] == ["mine"]
    assert main(["baseline", "show", "mine", "--dir", str(tmp_path)]) == 0
    assert '"weights_sha256"' in capsys.readouterr().out


# -- fp64 references (harness.baselines.make_reference) --------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_reference(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The shipped tiny baseline copied to a directory of its own, with a freshly made fp64 reference."""
    import shutil

    from harness.baselines import make_reference

    from conftest import ROOT

    base = tmp_path_factory.mktemp("ref") / "tiny.parquet"
    shutil.copy(ROOT / "fixtures" / "baselines" / "tiny-cpu-float32.parquet", base)
    made = make_reference(base, command="test")
    assert made.path == str(base.with_name("tiny.reference.parquet")) and made.previous_file is None
    return base


def test_a_reference_is_an_fp64_results_file_with_provenance(tiny_reference: Path) -> None:
    from harness.compare.reference import check_reference, reference_path

    ref = ResultsFile(reference_path(tiny_reference))
    assert ref.run.dtype == "float64" and ref.run.device == "cpu"
    assert ref.embeddings("tiny-bi-encoder")[2].dtype == np.float64
    assert ref.rerank("tiny-cross-encoder")["score"].dtype == np.float64
    table = ref.meta["reference"]
    assert table["baseline"] == "tiny-cpu-float32" and table["baseline_file"] == "tiny.parquet"
    assert table["corpus_sha256"] == ResultsFile(tiny_reference).corpus_meta.sha256
    assert table["command"] == "test" and table["duration_s"] > 0 and table["versions"]["torch_version"]
    assert table["models"]["tiny-bi-encoder"]["weights_sha256"] == ResultsFile(tiny_reference).records[
        "tiny-bi-encoder"].weights_sha256
    check_reference(ref, tiny_reference)  # fits the baseline it was made for


def test_token_counts_are_the_tokenizers_and_truncation_is_real(tiny_reference: Path) -> None:
    from transformers import AutoTokenizer

    from harness.compare.reference import reference_path
    from harness.config.corpus import DEFAULT_CORPUS_DIR, load_corpus
    from harness.config.registry import load_registry
    from harness.run.resolve import resolve_model_dir

    ref = ResultsFile(reference_path(tiny_reference))
    tokens = ref.token_columns("tiny-bi-encoder")
    assert tokens is not None
    registry = load_registry()
    directory, _ = resolve_model_dir(registry.models["tiny-bi-encoder"], allow_network=False, registry=registry)
    texts = {t.id: t.text for t in load_corpus(DEFAULT_CORPUS_DIR).texts()}
    expected = [len(i) for i in AutoTokenizer.from_pretrained(str(directory))([texts[i] for i in tokens["item_id"]],
                                                                                truncation=False)["input_ids"]]
    assert list(tokens["tokens"]) == expected
    limit = ref.records["tiny-bi-encoder"].max_seq_length
    assert limit and np.array_equal(tokens["truncated"], tokens["tokens"] > limit) and tokens["truncated"].sum() > 0
    pairs = ref.token_columns("tiny-cross-encoder")
    assert pairs is not None and len(pairs["tokens"]) == ref.corpus_meta.pairs and pairs["tokens"].min() > 2


def test_the_reference_says_a_fp32_rerun_is_rounding_and_bf16_is_not(tiny_reference: Path, tiny_results_again: Path,
                                                                       tmp_path: Path) -> None:
    from harness.compare.accuracy import accuracy
    from harness.compare.reference import check_reference, reference_path
    from harness.testing import bf16_round

    ref = ResultsFile(reference_path(tiny_reference))
    check_reference(ref, tiny_results_again)
    ids, _, truth = ref.embeddings("tiny-bi-encoder")
    base_ids, _, base = ResultsFile(tiny_reference).embeddings("tiny-bi-encoder")
    cand_ids, _, cand = ResultsFile(tiny_results_again).embeddings("tiny-bi-encoder")
    assert list(ids) == list(base_ids) == list(cand_ids)
    counts = ref.token_columns("tiny-bi-encoder")
    rerun = accuracy(ids, truth, base, cand, tokens=counts["tokens"] if counts else None)
    assert 0 < rerun.baseline.rmse < 1e-6 and rerun.rounding("float32"), rerun
    lossy = accuracy(ids, truth, base, bf16_round(cand))
    assert lossy.ratio > 100 and not lossy.rounding("bfloat16")


def test_a_reference_is_never_overwritten_without_force(tiny_reference: Path, capsys: pytest.CaptureFixture) -> None:
    from harness.baselines import make_reference
    from harness.compare.reference import reference_path

    before = reference_path(tiny_reference).read_bytes()
    with pytest.raises(BaselineExists, match="reference exists; refusing to overwrite"):
        make_reference(tiny_reference)
    assert main(["baseline", "reference", str(tiny_reference)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "tiny.reference.parquet: reference exists" in err[0]
    assert reference_path(tiny_reference).read_bytes() == before
    assert main(["baseline", "list", "--dir", str(tiny_reference.parent)]) == 0
    listed = list_baselines(tiny_reference.parent)
    assert [(b.name, b.previous, b.reference) for b in listed] == [("tiny", [], "tiny.reference.parquet")]
    assert "fp64 reference" in capsys.readouterr().out


@pytest.mark.parametrize(("where", "value", "message"), [
    ("run.dtype", "float32", "not an fp64 reference"),
    ("corpus.sha256", "0" * 64, "corpus differs"),
    ("models.tiny-bi-encoder.weights_sha256", "f" * 64, "model 'tiny-bi-encoder': weights differs"),
    ("models.tiny-bi-encoder.max_seq_length", 7, "model 'tiny-bi-encoder': truncation differs"),
    ("models.tiny-cross-encoder.tokenizer_class", "OtherTokenizer", "'tiny-cross-encoder': tokenization differs"),
    ("models.tiny-bi-encoder.encode.document_prompt", "query: ", "tokenization differs (encode.document_prompt"),
])
def test_check_reference_refuses_a_reference_that_does_not_fit(tiny_reference: Path, tmp_path: Path, where: str,
                                                               value: object, message: str) -> None:
    from harness.compare.reference import check_reference, reference_path
    from harness.errors import IncompatibleInputs
    from harness.results import rewrite_metadata

    ref = ResultsFile(reference_path(tiny_reference))
    meta = json.loads(json.dumps(ref.meta))
    *parents, key = where.split(".")
    node = meta
    for part in parents:
        node = node.setdefault(part, {})
    node[key] = value
    bad = rewrite_metadata(ref, tmp_path / "bad.reference.parquet", meta)
    with pytest.raises(IncompatibleInputs, match=re.escape(message)) as caught:
        check_reference(bad, tiny_reference)
    assert str(caught.value).startswith(str(bad)) and "\n" not in str(caught.value)
